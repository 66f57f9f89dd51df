// libFuzzer harness: the config.json readers (JSONConfig, then the UNet, VAE, text-encoder and DDIM scheduler
// configs, and the scheduler built from an accepted config) on arbitrary bytes.
// Built only by `make fuzz` (OCDEDIT_FUZZ=1, -sanitize=fuzzer,address); takes libFuzzer's options.
import Foundation
import StableDiffusion
import CFuzzerDriver

private let emptyInput = UnsafePointer<UInt8>(bitPattern: 1)!

@main
enum FuzzConfig {
    static func main() {
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzConfig(data ?? emptyInput, size) })
    }
}

func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let c = try? JSONConfig(data: Data(bytes: data, count: size), source: "fuzz/config.json") else { return 0 }
    _ = try? UNet2DConditionConfig(c)
    if let vae = try? AutoencoderKLConfig(c) { _ = vae.downscale }
    _ = try? CLIPTextConfig(c)
    if let s = try? DDIMSchedulerConfig(c) { _ = DDIMScheduler(config: s).alphasCumprod.count }
    // The typed accessors on every key, as any reader might call them.
    for key in c.values.keys {
        _ = try? c.int(key, 0)
        _ = try? c.double(key, 0)
        _ = try? c.bool(key, false)
        _ = try? c.string(key, "")
        _ = try? c.strings(key, [])
        _ = try? c.ints(key, [])
        _ = try? c.doubles(key)
        _ = try? c.intOrList(key, count: 4)
    }
    return 0
}
