// The ocdedit command-line tool: component runs (`ocdedit model …`, DESIGN.md §2) and benchmarks (`ocdedit bench …`).
import ArgumentParser

@main
struct OCDEdit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocdedit",
        abstract: "Object-centric diffusion video editing: component runs and benchmarks.",
        subcommands: [ModelCommand.self, BenchCommand.self])
}
