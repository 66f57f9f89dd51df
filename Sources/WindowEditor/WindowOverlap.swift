// Seamless windows (`window-overlap`): what a front end that cuts a stream into windows (the element through
// `EditorSession`, `ocdedit eval`) carries from one window into the next. Each window after the first is edited
// together with context frames taken from the input alone: the stream's first frame, the cross-frame anchor every
// window then shares (its edit and its keys/values are the same in every window), and the previous window's last
// input frames. The context frames are inverted and edited with the window, so its frames attend to them, and are
// never output.

/// Frames (and their masks) edited at the head of a window and not output.
public struct WindowContext: Sendable, Equatable {
    public var frames: [Frame]
    public var masks: [Mask]

    public init(frames: [Frame] = [], masks: [Mask] = []) {
        precondition(frames.count == masks.count, "one mask per context frame")
        self.frames = frames
        self.masks = masks
    }

    public static let none = WindowContext()
    public var isEmpty: Bool { frames.isEmpty }
    public var count: Int { frames.count }
}

/// The input frames one window leaves for the next. Windows must come in stream order; `reset` after a flush or a
/// seek (the next window then starts a new anchor, as a job starting mid-video does).
public struct WindowOverlap: Sendable {
    private struct Held: Sendable {
        var index: Int
        var frame: Frame
        var mask: Mask
    }

    /// The first frame since the last reset.
    private var anchor: Held?
    /// The last frames of the last window (at most `overlap` − 1 of them).
    private var tail: [Held] = []
    /// Frames seen since the last reset.
    private var seen = 0

    public init() {}

    public mutating func reset() { self = WindowOverlap() }

    /// The context of the window `frames` for `window-overlap` = `overlap`: nothing for the first window or overlap
    /// 0; else the anchor (the first frame since the reset) and the previous window's last `overlap` − 1 frames,
    /// in stream order, at most `overlap` frames and never a frame twice. Then remembers what the next window needs.
    /// A window whose frame size or format differs from the held frames' (new caps) starts over, as after a reset.
    public mutating func context(for frames: [Frame], masks: [Mask], overlap: Int) -> WindowContext {
        precondition(frames.count == masks.count, "one mask per frame")
        guard let first = frames.first else { return .none }
        if let a = anchor, a.frame.width != first.width || a.frame.height != first.height
            || a.frame.format != first.format {
            reset()
        }
        var context = WindowContext.none
        if overlap > 0, let anchor {
            let held = [anchor] + tail.filter { $0.index != anchor.index }.suffix(overlap - 1)
            context = WindowContext(frames: held.map(\.frame), masks: held.map(\.mask))
        }
        if anchor == nil { anchor = Held(index: seen, frame: first, mask: masks[0]) }
        let keep = max(0, overlap - 1)
        let window = frames.indices.map { Held(index: seen + $0, frame: frames[$0], mask: masks[$0]) }
        tail = Array((tail + window).suffix(keep))
        seen += frames.count
        return context
    }
}
