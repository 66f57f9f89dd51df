// What a long-lived front end (the element) keeps between windows: the model it holds, shared with everyone else
// naming that folder through `ModelCache`, and the editor for the latest window's settings. Settings travel with each
// window; a window whose settings differ from the last one's gets a new editor on the same weights (prompt embeddings
// are recomputed, nothing is read from disk). With `window-overlap`, it also keeps the input frames the next window
// is edited with as context (WindowOverlap.swift). Everything it throws is an `EditorFailure`.
import Foundation

public final class EditorSession: @unchecked Sendable {
    /// One window's result: `frames` nil = the window passes through unchanged (no model or no prompt); `warning` is
    /// set when a new editor says it will not edit (once per settings change).
    public struct Outcome {
        public var frames: [Frame]?
        public var warning: String?
    }

    /// Held for the whole of `hold` and `edit`: a session edits one window at a time.
    private let lock = NSLock()
    private var model: SharedModel?
    private var editor: (settings: EditorSettings, editor: WindowEditing)?
    /// What the last window leaves for the next (window-overlap).
    private var overlap = WindowOverlap()

    public init() {}

    /// Settings the editor cannot run, found before a model loads: only checked when a model is set (without one,
    /// frames pass through and no setting matters).
    public static func validate(_ settings: EditorSettings) throws(EditorFailure) {
        guard let folder = settings.modelPath, !folder.isEmpty else { return }
        do {
            try DiffusionWindowEditor.validate(settings)
        } catch {
            throw EditorFailure(.settings, "\(error)")
        }
    }

    /// True when `hold(modelFolder:)` would change the held model (and may load from disk).
    public func needsModel(_ folder: String?) -> Bool {
        lock.withLock { !holds(folder) }
    }

    /// Makes the model of `folder` the held one (nil or empty: none), from the cache or loaded now; `willLoad` runs
    /// just before a load from disk. The previously held model is let go first.
    public func hold(modelFolder folder: String?, willLoad: () -> Void = {}) throws(EditorFailure) {
        lock.lock()
        defer { lock.unlock() }
        try holdLocked(folder, willLoad: willLoad)
    }

    /// What loading the held model warned about (stored tensors no layer uses), one line each; empty without one.
    public var modelWarnings: [String] { lock.withLock { model?.pipeline.warnings ?? [] } }

    /// Lets the held model go (the cache frees it once no session holds it) and forgets the last window.
    public func release() {
        lock.withLock {
            model = nil
            editor = nil
            overlap.reset()
        }
    }

    /// Forgets the frames the last window left for the next (after a flush or seek: the next window is the first of
    /// a new stretch, with a new anchor).
    public func forgetContext() {
        lock.withLock { overlap.reset() }
    }

    /// Edits one window with `settings` (holding `settings.modelPath` first if it is not held yet). Windows come in
    /// stream order: with `settings.windowOverlap` > 0 each one after the first is edited with context frames from
    /// the windows before it (WindowOverlap); only its own frames come back.
    public func edit(frames: [Frame], masks: [Mask], settings: EditorSettings,
                     isCancelled: @escaping @Sendable () -> Bool) throws(EditorFailure) -> Outcome {
        lock.lock()
        defer { lock.unlock() }
        try holdLocked(settings.modelPath, willLoad: {})
        var warning: String?
        let current: WindowEditing
        if let cached = editor, cached.settings == settings {
            current = cached.editor
        } else {
            try Self.validate(settings)
            do {
                let made = try model.map { try EditorFactory.make(settings: settings, model: $0) }
                    ?? EditorFactory.make(settings: settings)
                editor = (settings, made.editor)
                current = made.editor
                warning = made.warning
            } catch {
                throw EditorFailure(.settings, "\(error)")
            }
        }
        let context = overlap.context(for: frames, masks: masks, overlap: settings.windowOverlap)
        if current is PassthroughEditor { return Outcome(frames: nil, warning: warning) }
        do {
            return Outcome(frames: try current.edit(frames: frames, masks: masks, context: context,
                                                    isCancelled: isCancelled),
                           warning: warning)
        } catch {
            throw EditorFailure.editing(error)
        }
    }

    private func holds(_ folder: String?) -> Bool {
        guard let folder, !folder.isEmpty else { return model == nil }
        return model?.folder == ModelCache.key(folder)
    }

    private func holdLocked(_ folder: String?, willLoad: () -> Void) throws(EditorFailure) {
        if holds(folder) { return }
        model = nil
        editor = nil
        guard let folder, !folder.isEmpty else { return }
        model = try ModelCache.model(folder: folder, willLoad: willLoad)
    }
}
