import ArgumentParser

/// `ocdedit model unet|vae-encode|vae-decode|text-encoder` (DESIGN.md §2).
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Run one Stable Diffusion component on safetensors input.")
}
