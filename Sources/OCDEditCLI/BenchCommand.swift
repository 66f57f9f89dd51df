import ArgumentParser

/// `ocdedit bench unet|vae|edit|gemm` (DESIGN.md §2): a human summary, then one JSON line.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks; the last line printed is a JSON object.")
}
