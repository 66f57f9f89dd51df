// The one error type the window editor's front door (`EditorSession`, `ModelCache`) throws. Front ends map `kind` to
// their own domains (the element's: README, "Using the element", Errors); `message` is one line a user can act on.
import StableDiffusion

public struct EditorFailure: Error, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The model folder, or a part it must contain, does not exist.
        case modelNotFound
        /// The model folder is there but does not load (corrupt, truncated, mismatched parts).
        case modelUnreadable
        /// A setting the editor cannot run with (found before any model loads or frame is edited).
        case settings
        /// Editing a window failed.
        case edit
        /// The caller's `isCancelled` turned true (flush, stop); not an error to report.
        case cancelled
    }

    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }

    /// A model load's error: the model layer's `ModelError` by its kind, naming `folder` when it does not already.
    static func loading(_ folder: String, _ error: Error) -> EditorFailure {
        let text = "\(error)"
        let message = text.contains(folder) ? text : "model folder \(folder): \(text)"
        if let e = error as? ModelError, e.kind == .notFound { return EditorFailure(.modelNotFound, message) }
        return EditorFailure(.modelUnreadable, message)
    }

    /// An edit's error: cancellation stays cancellation, anything else is a failed edit.
    static func editing(_ error: Error) -> EditorFailure {
        if let e = error as? EditorFailure { return e }
        if error is EditCancelled { return EditorFailure(.cancelled, "cancelled") }
        return EditorFailure(.edit, "\(error)")
    }
}
