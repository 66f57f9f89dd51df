// swift-tools-version:6.0
// ocdedit: a GStreamer element that edits video windows with Stable Diffusion 1.x on the CPU.
// Layers, top to bottom (a layer only imports the ones below it):
//   GstOCDEdit (element, GStreamer plumbing) -> WindowEditor (algorithms) -> StableDiffusion (models)
//   -> TensorKernels (tensor maths) -> COpenBLAS / CGStreamer / CGstShim (C system libraries)
//   OCDEditCLI (command line) -> EvalKit (evaluation clips, metrics, text-to-image, PNG) -> WindowEditor
import PackageDescription
import Foundation

// On an x86-64 build host with AVX2 and FMA (this project's machines), kernels are compiled for that CPU
// (`-target-cpu haswell`: SIMD8 as one ymm register, `addingProduct` as vfmadd) and see OCDEDIT_FMA. The binary then
// needs such a CPU; OCDEDIT_TARGET_CPU=generic at build time gives a portable one (slower kernels).
let hostHasAVX2FMA: Bool = {
    #if arch(x86_64)
    guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return false }
    let set = Set(flags.split(separator: " ").map(String.init))
    return set.contains("avx2") && set.contains("fma")
    #else
    return false
    #endif
}()
let targetCPU = ProcessInfo.processInfo.environment["OCDEDIT_TARGET_CPU"] ?? (hostHasAVX2FMA ? "haswell" : "generic")
let optimize: [SwiftSetting] = [.unsafeFlags(["-wmo"], .when(configuration: .release))]
    + (targetCPU == "generic" ? [] : [.unsafeFlags(["-target-cpu", targetCPU]), .define("OCDEDIT_FMA")])

let package = Package(
    name: "ocdedit",
    products: [
        // Loadable GStreamer plugin: libgstocdedit.so (copied to Plugin/lib by `make build`).
        .library(name: "gstocdedit", type: .dynamic, targets: ["GstOCDEdit"]),
        .executable(name: "ocdedit", targets: ["OCDEditCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .systemLibrary(name: "CGStreamer", pkgConfig: "gstreamer-1.0 gstreamer-base-1.0 gstreamer-video-1.0",
                       providers: [.apt(["libgstreamer1.0-dev", "libgstreamer-plugins-base1.0-dev"])]),
        // appsrc/appsink for the element tests.
        .systemLibrary(name: "CGstApp", pkgConfig: "gstreamer-app-1.0",
                       providers: [.apt(["libgstreamer-plugins-base1.0-dev"])]),
        // GstDiscoverer for `ocdedit edit` (does the input have audio?).
        .systemLibrary(name: "CGstPbutils", pkgConfig: "gstreamer-pbutils-1.0",
                       providers: [.apt(["libgstreamer-plugins-base1.0-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CGstShim", dependencies: ["CGStreamer"]),
        .target(name: "TensorKernels", dependencies: ["COpenBLAS"], swiftSettings: optimize),
        .target(name: "StableDiffusion", dependencies: ["TensorKernels"], swiftSettings: optimize),
        .target(name: "WindowEditor", dependencies: ["StableDiffusion", "TensorKernels"], swiftSettings: optimize),
        // Evaluation and generation tools on top of the editor (clips, metrics, PNG), used by the CLI, tested alone.
        .target(name: "EvalKit", dependencies: ["WindowEditor", "StableDiffusion", "TensorKernels"],
                swiftSettings: optimize),
        .target(name: "GstOCDEdit", dependencies: ["WindowEditor", "CGStreamer", "CGstShim"],
                swiftSettings: optimize),
        // `ocdedit edit` builds and runs a GStreamer pipeline with the element (CGStreamer, and CGstPbutils to probe).
        .executableTarget(name: "OCDEditCLI", dependencies: [
            "EvalKit", "WindowEditor", "StableDiffusion", "TensorKernels", "CGStreamer", "CGstPbutils",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: optimize),
        .testTarget(name: "TensorKernelsTests", dependencies: ["TensorKernels"]),
        .testTarget(name: "StableDiffusionTests", dependencies: ["StableDiffusion"]),
        .testTarget(name: "WindowEditorTests", dependencies: ["WindowEditor", "StableDiffusion", "TensorKernels"]),
        .testTarget(name: "EvalKitTests", dependencies: ["EvalKit", "WindowEditor", "StableDiffusion"]),
        .testTarget(name: "ElementTests", dependencies: ["CGStreamer", "CGstApp", "CGstShim"]),
        // Runs the built `ocdedit edit` as a subprocess (gst-launch-1.0, gst-discoverer-1.0 and script check it).
        .testTarget(name: "EditCommandTests", dependencies: []),
    ],
    // Kernels share raw pointers across Dispatch threads and the element lives on GObject callbacks: Swift 5 mode
    // (no strict Sendable checking) everywhere.
    swiftLanguageModes: [.v5]
)

// libFuzzer harnesses (Fuzz/<name>/, `make fuzz`): only in the package when OCDEDIT_FUZZ=1, since they need
// -sanitize=fuzzer to link (their `main` runs libFuzzer's driver).
if ProcessInfo.processInfo.environment["OCDEDIT_FUZZ"] == "1" {
    package.targets.append(.systemLibrary(name: "CFuzzerDriver", path: "Fuzz/CFuzzerDriver"))
    for name in ["FuzzSafetensors", "FuzzConfig", "FuzzTokenizer"] {
        package.targets.append(.executableTarget(name: name, dependencies: ["StableDiffusion", "CFuzzerDriver"],
                                                 path: "Fuzz/\(name)"))
        package.products.append(.executable(name: name, targets: [name]))
    }
}
