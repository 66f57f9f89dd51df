// The ocdedit command-line tool: component runs (`ocdedit model …`, docs/contracts.md), benchmarks (`ocdedit bench …`),
// evaluation on clips with ground truth (`ocdedit eval`), text-to-image (`ocdedit generate`) and editing a file
// (`ocdedit edit`).
import ArgumentParser

@main
struct OCDEdit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocdedit",
        abstract: "Object-centric diffusion video editing: file edits, component runs, benchmarks, evaluation, "
            + "generation.",
        subcommands: [EditCommand.self, ModelCommand.self, BenchCommand.self, EvalCommand.self, GenerateCommand.self])
}
