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

extension ModelError {
    /// The pipeline components, as named in messages and in diffusers' folder layout.
    public static let components = ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]

    /// Runs `body` (loading component `name`: unet, vae, text_encoder, tokenizer, scheduler), prefixing the message of
    /// any error it throws with "name: " once, so every load error says which component it is about.
    public static func loading<T>(_ name: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ModelError {
            throw e.message.hasPrefix("\(name): ") ? e : ModelError("\(name): \(e.message)", kind: e.kind)
        } catch {
            throw ModelError("\(name): \(error)")
        }
    }
}
