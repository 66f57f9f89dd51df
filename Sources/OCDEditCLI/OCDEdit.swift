// The ocdedit command-line tool: component runs (`ocdedit model …`, docs/contracts.md), benchmarks (`ocdedit bench …`),
// evaluation on clips with ground truth (`ocdedit eval`) and text-to-image (`ocdedit generate`).
import ArgumentParser

@main
struct OCDEdit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocdedit",
        abstract: "Object-centric diffusion video editing: component runs, benchmarks, evaluation, generation.",
        subcommands: [ModelCommand.self, BenchCommand.self, EvalCommand.self, GenerateCommand.self])
}
