/// Returns every frame untouched (no model or no prompt configured).
public final class PassthroughEditor: WindowEditing {
    public init() {}
    public func edit(frames: [Frame], masks: [Mask], isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
        frames
    }
}
