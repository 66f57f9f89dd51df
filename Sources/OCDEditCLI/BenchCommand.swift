import ArgumentParser
import Foundation
import StableDiffusion
import TensorKernels

/// `ocdedit bench unet|vae|edit|gemm` (DESIGN.md §2): a human summary, then one JSON object as the last line.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks; the last line printed is a JSON object.",
                                                    subcommands: [GemmBench.self, UNetBench.self, VAEBench.self])
}

/// Peak resident memory of this process (VmHWM), bytes.
func peakRSSBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
    }
    return 0
}

func printJSON(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now()
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}

/// The machine's sgemm rate at 2048³ (the roofline every other figure is compared with), GFLOP/s.
func measureGemmRoofline(size n: Int = 2048, repeats: Int = 3) -> Double {
    let a = Tensor.randomNormal(shape: [n, n], seed: 1), b = Tensor.randomNormal(shape: [n, n], seed: 2)
    let c = Tensor(shape: [n, n])
    Ops.gemm(a.data, b.data, c.data, m: n, n: n, k: n) // warm-up
    let best = (0..<repeats).map { _ in seconds { Ops.gemm(a.data, b.data, c.data, m: n, n: n, k: n) } }.min()!
    return 2 * Double(n * n * n) / best / 1e9
}

struct GemmBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemm", abstract: "The machine's sgemm roofline (2048³).")
    @Option(help: "Matrix size.") var size = 2048

    func run() {
        let gflops = measureGemmRoofline(size: size)
        print(String(format: "sgemm %d³ on %d cores: %.1f GFLOP/s", size, Parallel.cores, gflops))
        printJSON(["bench": "gemm", "size": size, "gflops": gflops, "roofline_fraction": 1.0, "seconds": 2 * pow(Double(size), 3) / gflops / 1e9,
                   "peak_rss_bytes": peakRSSBytes()])
    }
}

/// The SD 1.5 UNet configuration (runwayml/stable-diffusion-v1-5 unet/config.json), random weights in memory.
func sd15UNet(seed: UInt64 = 0) throws -> UNet2DConditionModel {
    var c = UNet2DConditionConfig()
    c.blockOutChannels = [320, 640, 1280, 1280]
    c.heads = [8, 8, 8, 8]
    c.crossAttentionDim = 768
    return try UNet2DConditionModel(config: c, weights: RandomWeights(seed: seed))
}

/// Multiply-adds ×2 of the SD 1.5 UNet per batch item (DESIGN.md §4: 803 GFLOP at 64×64 latents, 180 at 32×32),
/// scaled by token count between those points.
func sd15UNetGFLOP(latent: Int) -> Double {
    latent >= 64 ? 803 * Double(latent * latent) / 4096 : 180 * Double(latent * latent) / 1024
}

struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "unet", abstract: "SD 1.5 UNet forward, random weights.")
    @Option(help: "Image size in pixels (latent = size/8).") var size = 256
    @Option(help: "Batch size.") var batch = 1
    @Option(help: "Timed forwards.") var repeats = 1

    func run() throws {
        let roofline = measureGemmRoofline()
        var unet: UNet2DConditionModel!
        let build = seconds { unet = try! sd15UNet() }
        let latent = size / 8
        let x = Tensor.randomNormal(shape: [batch, 4, latent, latent], seed: 3)
        let ctx = Tensor.randomNormal(shape: [batch, 77, 768], seed: 4)
        let times = Array(repeating: Float(500), count: batch)
        let timings = (0..<repeats).map { _ in seconds { _ = unet(x, timesteps: times, encoderHiddenStates: ctx) } }
        let best = timings.min()!
        let gflop = sd15UNetGFLOP(latent: latent) * Double(batch)
        let rate = gflop / best
        print(String(format: "SD 1.5 UNet, %d px (latent %d×%d), batch %d: %.2f s per forward (%.0f GFLOP/s, %.0f%% of the %.0f GFLOP/s sgemm roofline); weights built in %.1f s",
                     size, latent, latent, batch, best, rate, 100 * rate / roofline, roofline, build))
        printJSON(["bench": "unet", "size": size, "batch": batch, "seconds_per_forward": best, "gflops": rate,
                   "roofline_gflops": roofline, "roofline_fraction": rate / roofline, "peak_rss_bytes": peakRSSBytes()])
    }
}

struct VAEBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae", abstract: "SD VAE encode + decode, random weights.")
    @Option(help: "Image size in pixels.") var size = 256

    func run() throws {
        let roofline = measureGemmRoofline()
        var c = AutoencoderKLConfig()
        c.blockOutChannels = [128, 256, 512, 512]
        c.layersPerBlock = 2
        let vae = try AutoencoderKL(config: c, weights: RandomWeights(seed: 1))
        let x = Tensor.randomNormal(shape: [1, 3, size, size], seed: 2)
        var z: Tensor!
        let enc = seconds { z = vae.encode(x) }
        let dec = seconds { _ = vae.decode(z) }
        // DESIGN.md §4: 1.1 TFLOP (encoder) and 2.5 TFLOP (decoder) per 512² frame, proportional to pixels.
        let scale = Double(size * size) / (512 * 512)
        let gflop = (1100 + 2500) * scale
        let rate = gflop / (enc + dec)
        print(String(format: "SD VAE %d px: encode %.2f s, decode %.2f s (%.0f GFLOP/s, %.0f%% of roofline)", size, enc, dec, rate, 100 * rate / roofline))
        printJSON(["bench": "vae", "size": size, "seconds_per_forward": enc + dec, "encode_seconds": enc, "decode_seconds": dec,
                   "gflops": rate, "roofline_fraction": rate / roofline, "peak_rss_bytes": peakRSSBytes()])
    }
}
