/// A one-line error about a model folder or file that a user can act on: the error type of this layer's boundary.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, for callers that map errors to their own domains (the element: RESOURCE/NOT_FOUND or READ).
    public enum Kind: Sendable, Equatable {
        /// The folder, or a component folder or file it must contain, does not exist.
        case notFound
        /// Something is there but is not a loadable model (corrupt, truncated, mismatched, unreadable).
        case invalid
    }

    public let message: String
    public let kind: Kind
    public init(_ message: String, kind: Kind = .invalid) {
        self.message = message
        self.kind = kind
    }
    public var description: String { message }
}
