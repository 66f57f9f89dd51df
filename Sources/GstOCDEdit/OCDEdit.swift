// The ocdedit element: windows of video frames, each with the newest mask at or before it (by running time),
// edited on a worker thread while the next window fills, pushed downstream with their original timestamps as soon as
// the edit ends. The model is held from READY→PAUSED to PAUSED→READY (shared through WindowEditor's ModelCache).
import Foundation
import CGStreamer
import CGstShim
import WindowEditor

/// A thread-safe boolean. As `cancel`: set by FLUSH_START and stop, read by the editor between steps.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set(_ v: Bool) { lock.withLock { value = v } }
}

/// Caps the element holds a reference to (the video caps a window was filled under, the caps last sent downstream).
final class CapsRef: @unchecked Sendable {
    let caps: UnsafeMutablePointer<GstCaps>
    init(_ caps: UnsafeMutablePointer<GstCaps>) { self.caps = gst_caps_ref(caps) }
    deinit { gst_caps_unref(caps) }
}

/// A serialized event held until the frames before it have been pushed (a GAP on the video pad); unreffed if it never
/// goes out (flush, failed window).
final class EventRef: @unchecked Sendable {
    private(set) var event: UnsafeMutablePointer<GstEvent>?
    init(taking event: UnsafeMutablePointer<GstEvent>) { self.event = event }
    /// The event, handed over to the caller (nil after the first call).
    func take() -> UnsafeMutablePointer<GstEvent>? { defer { event = nil }; return event }
    deinit { if let event { gst_event_unref(event) } }
}

/// One window on its way through the worker, with the settings it is edited with and the caps its frames carry.
final class WindowJob: @unchecked Sendable {
    /// Counts the windows since start, for the log.
    let number: Int
    let buffers: [BufferRef]
    let masks: [Mask]
    let layout: VideoLayout
    let caps: CapsRef
    let settings: EditorSettings
    /// Events that go downstream between the window's frames: `after` = how many of its frames precede the event.
    /// Only touched under the element's state lock (source thread), never by the worker.
    var events: [(after: Int, event: EventRef)] = []
    let done = DispatchSemaphore(value: 0)
    /// Edited buffers (nil = push the input buffer unchanged); filled by the worker.
    var outputs: [UnsafeMutablePointer<GstBuffer>?] = []
    var failure: EditorFailure?
    /// The edit alone: a model load before it is not a per-window cost and stays out of the latency.
    var seconds = 0.0
    /// The diffusion edit ran to its end (not a pass-through editor, not cancelled).
    var edited = false
    /// Live mode: when its frames must leave; set when it is dispatched.
    var deadline: Deadline?
    /// Set when the window leaves unedited (decided at dispatch, or its edit cancelled), with how late the edit would
    /// have been or was (ns), and what its frames then show.
    var late: LateReason?
    var lateBy: Int64 = 0
    var latePolicy = LatePolicy.defaultValue

    init(number: Int, buffers: [BufferRef], masks: [Mask], layout: VideoLayout, caps: CapsRef,
         settings: EditorSettings) {
        self.number = number
        self.buffers = buffers
        self.masks = masks
        self.layout = layout
        self.caps = caps
        self.settings = settings
    }

    deinit { for case let b? in outputs { gst_buffer_unref(b) } }
}

/// What the element is doing (kept apart from `Settings`, what the user asked for).
struct State {
    /// The video caps in force (the window being filled was filled under them: a caps change finishes the window).
    var videoLayout: VideoLayout?
    var videoCaps: CapsRef?
    var maskLayout: VideoLayout?
    var window: [(buffer: BufferRef, mask: Mask?)] = []
    /// Events to push after the first `after` frames of the window being filled.
    var windowEvents: [(after: Int, event: EventRef)] = []
    /// The last segment of the video pad, and whether it still has to go downstream before the next GAP event (the
    /// aggregator sends it before the next buffer by itself, not before an event).
    var videoSegment: GstSegment?
    var outputSegment = State.timeSegment
    var segmentUnsent = true
    /// The caps of the frames last sent downstream (what a renegotiation must keep).
    var outputCaps: CapsRef?
    /// A flow error (not-linked, not-negotiated) has been posted to the bus since start or the last flush.
    var flowErrorPosted = false
    var lastMask: Mask?
    var inFlight: WindowJob?
    /// Live mode: late windows owed behind `inFlight` (pushed, in order, right after it).
    var waiting: [WindowJob] = []
    /// The last frame pushed from an edited window, with its caps (late-policy=last-edited).
    var lastEdited: (buffer: BufferRef, caps: CapsRef)?
    /// Live mode: windows left unedited by prediction since the last edit tried (one is tried every
    /// `OCDEdit.retryAfter`, so a passing slowdown does not stop editing for good).
    var skippedSinceTry = 0
    /// Windows dispatched since start.
    var windows = 0
    /// What pushing a window from the wake-up event returned, when not OK: `aggregate` returns it next.
    var pendingFlow: GstFlowReturn?

    static var timeSegment: GstSegment {
        var segment = GstSegment()
        gst_segment_init(&segment, GST_FORMAT_TIME)
        return segment
    }
}

/// What the latency query reports; own lock, since property changes update it from the application's thread.
struct LatencyState {
    var frameDuration: GstClockTime = 0
    /// The longest diffusion edit measured since start (the budget of processing-latency=-1), 0 before any.
    var processingEstimate: GstClockTime = 0
    var reported: GstClockTime = GstClockTime.max
    /// Live mode's prediction of the next edit, in seconds: the last edit's time; an edit cancelled at its deadline
    /// counts twice the time it ran (it would have taken longer). Nil before any edit.
    var nextEditSeconds: Double?
}

extension EditorFailure.Kind {
    /// The GStreamer error domain and code of each failure (README, "Using the element", Errors).
    var gstError: (domain: GQuark, code: Int32) {
        switch self {
        case .modelNotFound: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_NOT_FOUND.rawValue))
        case .modelUnreadable: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_READ.rawValue))
        case .settings: return (gst_resource_error_quark(), Int32(GST_RESOURCE_ERROR_SETTINGS.rawValue))
        case .edit, .cancelled: return (gst_library_error_quark(), Int32(GST_LIBRARY_ERROR_FAILED.rawValue))
        }
    }
}

final class OCDEdit: @unchecked Sendable {
    let aggregator: UnsafeMutablePointer<GstAggregator>
    let videoPad: UnsafeMutablePointer<GstAggregatorPad>
    let maskPad: UnsafeMutablePointer<GstAggregatorPad>

    private let settingsLock = NSLock()
    private var settings = Settings()
    private var state = State()
    /// Held by `aggregate` and the wake-up event (source thread) and by flush/start/stop, which may come from
    /// streaming threads.
    private let stateLock = NSRecursiveLock()
    private let latencyLock = NSLock()
    private var latency = LatencyState()
    private let cancel = CancelFlag()
    /// EOS came on the video pad and eos-policy says cancel: the running edit stops, owed windows go unedited.
    private let eosCancel = CancelFlag()
    /// windows-late and the QoS statistics (LiveMode.swift).
    private let live = LiveCounters()
    /// Live mode: after this many windows left unedited by prediction, one is tried anyway.
    static let retryAfter = 10
    /// The unlinked mask pad has been sent its fallback EOS (since start or the last flush).
    private let maskFallbackSent = CancelFlag()
    private let worker = DispatchQueue(label: "ocdedit.worker")
    /// Sends the wake-up events (see `wakeAggregator`): sending may wait for a pad's stream lock, never on `worker`.
    private let waker = DispatchQueue(label: "ocdedit.waker")
    /// The held model and the editor of the last window's settings.
    private let session = EditorSession()
    private var rejectedCaps = Set<String>()
    /// Frames and edit time pushed since start, for the `progress` messages (Progress.swift).
    private let progress = WindowProgress()
    /// Name of the custom event the worker queues on a sink pad to wake the source thread (see `wakeAggregator`).
    private static let wakeEventName = "ocdedit-window-edited"

    init(aggregator: UnsafeMutablePointer<GstAggregator>, videoPad: UnsafeMutablePointer<GstAggregatorPad>,
         maskPad: UnsafeMutablePointer<GstAggregatorPad>) {
        self.aggregator = aggregator
        self.videoPad = videoPad
        self.maskPad = maskPad
    }

    private var element: UnsafeMutablePointer<GstElement> {
        UnsafeMutableRawPointer(aggregator).assumingMemoryBound(to: GstElement.self)
    }
    private func pad(_ p: UnsafeMutablePointer<GstAggregatorPad>) -> UnsafeMutablePointer<GstPad> {
        UnsafeMutableRawPointer(p).assumingMemoryBound(to: GstPad.self)
    }

    func post(error text: String, domain: GQuark = gst_stream_error_quark(),
              code: Int32 = Int32(GST_STREAM_ERROR_FAILED.rawValue)) {
        ocd_post_message(element, GST_MESSAGE_ERROR, domain, code, text, nil)
    }
    func post(warning text: String) {
        ocd_post_message(element, GST_MESSAGE_WARNING, gst_stream_error_quark(),
                         Int32(GST_STREAM_ERROR_FAILED.rawValue), text, nil)
    }
    func post(_ failure: EditorFailure) {
        let (domain, code) = failure.kind.gstError
        ocd_post_message(element, GST_MESSAGE_ERROR, domain, code, failure.message, nil)
    }
    private func postProgress(_ type: GstProgressType, _ text: String) {
        let object = UnsafeMutableRawPointer(element).assumingMemoryBound(to: GstObject.self)
        _ = gst_element_post_message(element, gst_message_new_progress(object, type, "loading", text))
    }
    private func log(_ level: GstDebugLevel, _ message: @autoclosure () -> String, function: String = #function,
                     line: Int = #line) {
        Log.at(level, UnsafeMutableRawPointer(element), message(), function: function, line: line)
    }

    // MARK: properties

    /// A value the table refuses is kept out of the settings and remembered (`Settings.rejected`): the element will
    /// not start, or stops at the next window, with a RESOURCE/SETTINGS error naming it.
    func setProperty(_ id: Int, _ value: UnsafePointer<GValue>) {
        guard propertyTable.indices.contains(id - 1) else { return }
        let property = propertyTable[id - 1]
        let (shown, refusal): (String, String?) = settingsLock.withLock {
            var refusal: String?
            do {
                try property.set(&settings, value)
                settings.rejected[property.name] = nil
            } catch {
                refusal = "\(error)"
                settings.rejected[property.name] = refusal
            }
            return (property.show(settings), refusal)
        }
        if let refusal {
            log(GST_LEVEL_WARNING, "property \(property.name) refused: \(refusal) (stays \(shown))")
        } else {
            log(GST_LEVEL_INFO, "property \(property.name) = \(shown)")
        }
        updateLatency() // window-size, processing-latency, model and prompt change it
    }

    func getProperty(_ id: Int, _ value: UnsafeMutablePointer<GValue>) {
        guard propertyTable.indices.contains(id - 1) else { return }
        let property = propertyTable[id - 1]
        if let status = property.status {
            status(ElementStatus(windowsLate: live.windowsLate), value)
            return
        }
        let s = settingsLock.withLock { settings }
        property.get(s, value)
    }

    private var currentSettings: Settings { settingsLock.withLock { settings } }

    // MARK: lifecycle

    /// READY→PAUSED: checks the settings and holds the model (loading it unless another element in the process holds
    /// it already), so a missing model or a bad setting fails this state change before any frame flows.
    func start() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        latencyLock.withLock { latency = LatencyState() }
        cancel.set(false)
        eosCancel.set(false)
        live.reset()
        rejectedCaps = []
        progress.reset()
        let s = currentSettings
        if let rejection = s.rejection {
            post(EditorFailure(.settings, rejection))
            return false
        }
        do throws(EditorFailure) {
            try EditorSession.validate(s.editor)
            try holdModel(s.editor.modelPath)
        } catch {
            post(error)
            return false
        }
        return true
    }

    /// PAUSED→READY: drops the windows and lets the model go.
    func stop() -> Bool {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state = State()
        cancel.set(false)
        eosCancel.set(false)
        maskFallbackSent.set(false)
        session.release()
        return true
    }

    /// Holds the model of `folder` (none for nil); a load from disk is bracketed by PROGRESS start and complete (or
    /// error) messages with code `loading`, which no cache hit posts.
    private func holdModel(_ folder: String?) throws(EditorFailure) {
        var loading = false
        do {
            try session.hold(modelFolder: folder, willLoad: {
                loading = true
                log(GST_LEVEL_INFO, "loading model folder \(folder ?? "")")
                postProgress(GST_PROGRESS_TYPE_START, "Loading model folder \(folder ?? "")")
            })
        } catch {
            if loading { postProgress(GST_PROGRESS_TYPE_ERROR, error.message) }
            throw error
        }
        if loading {
            log(GST_LEVEL_INFO, "model folder \(folder ?? "") loaded")
            for warning in session.modelWarnings { log(GST_LEVEL_WARNING, warning) }
            postProgress(GST_PROGRESS_TYPE_COMPLETE, "Loaded model folder \(folder ?? "")")
        }
    }

    /// The aggregator's flush (after a flushing seek): see `dropPendingWork`.
    func flush() -> GstFlowReturn {
        dropPendingWork()
        if let parentFlush = OCDEditType.parentClass.pointee.flush { return parentFlush(aggregator) }
        return GST_FLOW_OK
    }

    /// FLUSH_STOP: drop the window being filled and the one being edited (told to cancel at FLUSH_START).
    private func dropPendingWork() {
        cancel.set(true)
        stateLock.lock(); defer { stateLock.unlock() }
        finishInFlight()
        state.window = []
        state.windowEvents = []
        session.forgetContext()   // window-overlap: the next window starts a new stretch
        state.lastMask = nil
        state.pendingFlow = nil
        state.flowErrorPosted = false
        state.segmentUnsent = true
        cancel.set(false)
        eosCancel.set(false)
    }

    /// Cancels the window on the worker, waits for it and drops its output and the late windows behind it.
    private func finishInFlight() {
        state.waiting = []
        guard let job = state.inFlight else { return }
        cancel.set(true)
        job.done.wait()
        state.inFlight = nil
    }

    // MARK: events and queries

    func sinkEventPreQueue(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>,
                           _ event: UnsafeMutablePointer<GstEvent>) -> GstFlowReturn {
        let type = event.pointee.type
        if aggPad == videoPad && type == GST_EVENT_FLUSH_START {
            cancel.set(true)
        }
        if aggPad == maskPad && type == GST_EVENT_FLUSH_STOP { maskFallbackSent.set(false) }
        // EOS is seen here as it arrives, before the frames queued ahead of it: with eos-policy cancel (auto when
        // live) the running edit stops at its next diffusion step and the windows still owed leave unedited.
        if aggPad == videoPad && type == GST_EVENT_EOS && eosCancels(currentSettings) {
            eosCancel.set(true)
            log(GST_LEVEL_INFO, "EOS: cancelling the running edit, owed frames leave as late-policy says")
        }
        // An unlinked mask pad would stall the aggregator forever (it waits for data on every pad): at the video
        // stream's first event after start or a flush, mark the mask pad EOS, so every frame gets the documented
        // fallback (the whole frame is foreground).
        if aggPad == videoPad && (type == GST_EVENT_STREAM_START || type == GST_EVENT_SEGMENT || type == GST_EVENT_EOS)
            && ocd_pad_is_linked(pad(maskPad)) == 0 && !maskFallbackSent.isSet {
            maskFallbackSent.set(true)
            let m = pad(maskPad)
            _ = gst_pad_send_event(m, gst_event_new_stream_start("ocdedit-mask-unlinked"))
            var segment = GstSegment()
            gst_segment_init(&segment, GST_FORMAT_TIME)
            _ = gst_pad_send_event(m, gst_event_new_segment(&segment))
            _ = gst_pad_send_event(m, gst_event_new_eos())
        }
        return OCDEditType.parentClass.pointee.sink_event_pre_queue!(aggregator, aggPad, event)
    }

    func sinkEvent(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>, _ event: UnsafeMutablePointer<GstEvent>) -> Bool {
        if event.pointee.type == GST_EVENT_CUSTOM_DOWNSTREAM, let structure = gst_event_get_structure(event),
           gst_structure_has_name(structure, OCDEdit.wakeEventName) != 0 {
            gst_event_unref(event)
            stateLock.lock(); defer { stateLock.unlock() }
            let r = pushFinished()
            if r != GST_FLOW_OK && r != GST_FLOW_FLUSHING { state.pendingFlow = r }
            return true
        }
        // The aggregator calls `flush` only for flushing seeks it started; a flush from upstream ends here.
        if aggPad == videoPad && event.pointee.type == GST_EVENT_FLUSH_STOP { dropPendingWork() }
        switch event.pointee.type {
        case GST_EVENT_CAPS:
            // Never forwarded as it comes (the parent would put the new caps on the source pad ahead of the frames
            // still queued under the old ones): the video caps go downstream with the frames they describe.
            stateLock.lock(); defer { stateLock.unlock() }
            var caps: UnsafeMutablePointer<GstCaps>?
            gst_event_parse_caps(event, &caps)
            defer { gst_event_unref(event) }
            guard let caps else { return false }
            return aggPad == videoPad ? videoCapsChanged(caps) : maskCapsChanged(caps)
        case GST_EVENT_SEGMENT where aggPad == videoPad:
            stateLock.lock(); defer { stateLock.unlock() }
            var segment = GstSegment()
            gst_event_copy_segment(event, &segment)
            if let previous = state.videoSegment, segmentsEqual(previous, segment) { break }
            // Frames of the old segment leave under it; the new segment goes downstream before the next frame.
            finishWindows()
            state.videoSegment = segment
            if segment.format == GST_FORMAT_TIME {
                gst_aggregator_update_segment(aggregator, &segment)
                state.outputSegment = segment
                state.segmentUnsent = true
            }
        case GST_EVENT_GAP where aggPad == videoPad:
            // Not a frame (the parent would queue an empty buffer in its place): it goes downstream after the frames
            // that came before it.
            stateLock.lock(); defer { stateLock.unlock() }
            let held = EventRef(taking: event)
            if !state.window.isEmpty {
                state.windowEvents.append((state.window.count, held))
            } else if let job = state.waiting.last ?? state.inFlight {
                job.events.append((job.buffers.count, held))
            } else {
                pushEvent(held)
            }
            return true
        default:
            break
        }
        return OCDEditType.parentClass.pointee.sink_event!(aggregator, aggPad, event) != 0
    }

    private func segmentsEqual(_ a: GstSegment, _ b: GstSegment) -> Bool {
        var a = a, b = b
        return a.format == b.format && gst_segment_is_equal(&a, &b) != 0 && a.base == b.base
    }

    /// Source thread, state lock held: edits the partial window and pushes every frame owed (EOS, or a caps or
    /// segment change, ends the window). From an event, a push that fails is returned by the next `aggregate`.
    @discardableResult
    private func finishWindows(fromEvent: Bool = true) -> GstFlowReturn {
        var r = GST_FLOW_OK
        if !state.window.isEmpty { r = dispatchWindow() }
        if r == GST_FLOW_OK { r = pushOwed(wait: true) }
        if fromEvent && r != GST_FLOW_OK && r != GST_FLOW_FLUSHING && state.pendingFlow == nil { state.pendingFlow = r }
        return r
    }

    private func videoCapsChanged(_ caps: UnsafeMutablePointer<GstCaps>) -> Bool {
        guard let layout = VideoLayout(caps: caps) else {
            post(error: "sink pad: caps \(capsString(caps)) not accepted, expected video/x-raw with "
                        + "format RGB, RGBA, BGRx or I420", code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
            return false
        }
        if let refusal = canvasRefusal(layout, currentSettings) {
            post(error: "sink pad: caps \(capsString(caps)) not accepted: \(refusal)",
                 code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
            return false
        }
        if let current = state.videoCaps, gst_caps_is_equal(current.caps, caps) != 0 { return true }
        // The frames queued under the old caps are edited and leave with the old caps first.
        finishWindows()
        state.videoLayout = layout
        state.videoCaps = CapsRef(caps)
        let fpsN = layout.info.fps_n, fpsD = layout.info.fps_d
        let duration = fpsN > 0 ? gst_util_uint64_scale_int(GstClockTime(1_000_000_000), fpsD, fpsN) : 0
        latencyLock.withLock { latency.frameDuration = duration }
        setOutputCaps(state.videoCaps!)
        updateLatency()
        return true
    }

    private func maskCapsChanged(_ caps: UnsafeMutablePointer<GstCaps>) -> Bool {
        guard let layout = VideoLayout(caps: caps, mask: true) else {
            post(error: "mask pad: caps \(capsString(caps)) not accepted, expected "
                        + "video/x-raw,format=GRAY8", code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
            return false
        }
        state.maskLayout = layout
        return true
    }

    /// Why frames of `layout` cannot be edited with `settings` (a canvas past the bound), or nil. Only a diffusion
    /// edit builds a canvas: pass-through and preview-mask take any size.
    private func canvasRefusal(_ layout: VideoLayout, _ settings: Settings) -> String? {
        let editor = settings.editor
        guard !editor.previewMask, let model = editor.modelPath, !model.isEmpty, let prompt = editor.prompt,
              !prompt.isEmpty else { return nil }
        return DiffusionWindowEditor.canvasRefusal(width: layout.width, height: layout.height,
                                                   shortSide: editor.processingSize)
    }

    /// Source thread: the caps of the frames about to go downstream (a no-op when they are the current ones).
    private func setOutputCaps(_ caps: CapsRef) {
        if let current = state.outputCaps, current === caps || gst_caps_is_equal(current.caps, caps.caps) != 0 {
            return
        }
        state.outputCaps = caps
        gst_aggregator_set_src_caps(aggregator, caps.caps)
    }

    /// Source thread: pushes a held event downstream after the stream-start, caps and segment it must follow.
    private func pushEvent(_ held: EventRef) {
        guard let event = held.take() else { return }
        guard let caps = state.outputCaps ?? state.videoCaps else {
            log(GST_LEVEL_DEBUG, "dropping a \(String(cString: gst_event_type_get_name(event.pointee.type))) event "
                + "that came before any caps")
            gst_event_unref(event)
            return
        }
        setOutputCaps(caps)
        let src = aggregator.pointee.srcpad!
        if state.segmentUnsent {
            _ = gst_pad_push_event(src, gst_event_new_segment(&state.outputSegment))
            state.segmentUnsent = false
        }
        _ = gst_pad_push_event(src, event)
    }

    func sinkQuery(_ aggPad: UnsafeMutablePointer<GstAggregatorPad>, _ query: UnsafeMutablePointer<GstQuery>) -> Bool {
        let result = OCDEditType.parentClass.pointee.sink_query!(aggregator, aggPad, query) != 0
        if query.pointee.type == GST_QUERY_ACCEPT_CAPS {
            var caps: UnsafeMutablePointer<GstCaps>?
            var accepted: gboolean = 0
            gst_query_parse_accept_caps(query, &caps)
            gst_query_parse_accept_caps_result(query, &accepted)
            if let caps, !(result && accepted != 0) {
                let text = capsString(caps)
                let message = aggPad == maskPad
                    ? "mask pad: caps \(text) not accepted, expected video/x-raw,format=GRAY8"
                    : "sink pad: caps \(text) not accepted, expected video/x-raw with format RGB, RGBA, BGRx or I420"
                if rejectedCaps.insert(message).inserted {
                    post(error: message, code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
                }
            }
        }
        return result
    }

    func updateSrcCaps(_ downstream: UnsafeMutablePointer<GstCaps>?,
                       _ ret: UnsafeMutablePointer<UnsafeMutablePointer<GstCaps>?>) -> GstFlowReturn {
        stateLock.lock(); defer { stateLock.unlock() }
        // Renegotiation keeps the caps of the frames going out, not those of frames still queued.
        if let output = state.outputCaps {
            ret.pointee = gst_caps_ref(output.caps)
            return GST_FLOW_OK
        }
        guard let current = gst_pad_get_current_caps(pad(videoPad)) else {
            // A stream that ends before any caps (EOS with zero frames): any caps do, no buffer will follow.
            if gst_aggregator_pad_is_eos(videoPad) != 0, let downstream {
                ret.pointee = gst_caps_fixate(gst_caps_ref(downstream))
                return GST_FLOW_OK
            }
            return GST_FLOW_CUSTOM_ERROR // GST_AGGREGATOR_FLOW_NEED_DATA
        }
        ret.pointee = current
        return GST_FLOW_OK
    }

    private func capsString(_ caps: UnsafeMutablePointer<GstCaps>) -> String {
        guard let s = gst_caps_to_string(caps) else { return "(unknown)" }
        defer { g_free(s) }
        return String(cString: s)
    }

    /// Latency: a whole window must arrive before its first frame leaves, plus the processing budget:
    /// `processing-latency`, or with -1 the longest edit measured (edits only: the model loads before the stream
    /// starts), 1000 ms before the first edit, 0 when nothing is edited (no model or prompt, preview-mask).
    private func updateLatency() {
        let s = currentSettings
        let window = GstClockTime(s.windowSize)
        let changed: GstClockTime? = latencyLock.withLock {
            let budget: GstClockTime
            if s.live.processingLatencyMs >= 0 {
                budget = GstClockTime(s.live.processingLatencyMs) * 1_000_000
            } else if latency.processingEstimate > 0 {
                budget = latency.processingEstimate
            } else {
                budget = willEdit(s) ? GstClockTime(ProcessingLatencySetting.unmeasuredMilliseconds) * 1_000_000 : 0
            }
            let value = window * latency.frameDuration + budget
            guard value != latency.reported else { return nil }
            latency.reported = value
            return value
        }
        if let changed { gst_aggregator_set_latency(aggregator, changed, changed) }
    }

    /// The settings run a diffusion edit (a model and a prompt, not preview-mask).
    private func willEdit(_ s: Settings) -> Bool {
        !s.editor.previewMask && !(s.editor.modelPath ?? "").isEmpty && !(s.editor.prompt ?? "").isEmpty
    }

    /// The src pad's queries: with `live=true` the latency answer says live even when upstream is not (the
    /// aggregator has added the element's latency to upstream's).
    func srcQuery(_ query: UnsafeMutablePointer<GstQuery>) -> Bool {
        let result = OCDEditType.parentClass.pointee.src_query!(aggregator, query) != 0
        if result && query.pointee.type == GST_QUERY_LATENCY && currentSettings.live.forceLive {
            var isLive: gboolean = 0
            var minimum: GstClockTime = 0, maximum: GstClockTime = 0
            gst_query_parse_latency(query, &isLive, &minimum, &maximum)
            gst_query_set_latency(query, 1, minimum, maximum)
        }
        return result
    }

    // MARK: live mode

    /// Live mode: upstream said live in the latency query, or `live=true`.
    private func isLive(_ s: Settings) -> Bool {
        s.live.forceLive || gst_aggregator_get_latency(aggregator) != GstClockTime.max
    }

    private func eosCancels(_ s: Settings) -> Bool {
        switch s.live.eosPolicy {
        case .finish: return false
        case .cancel: return true
        case .auto: return isLive(s)
        }
    }

    /// Live mode (nil when not live): the deadline of a window whose first frame has running time `start` (that
    /// time plus upstream's latency and the element's, or the element's alone when only `live=true` says live), and
    /// whether there is a clock at all (none while a non-live upstream prerolls with `live=true`). The deadline is
    /// nil without a clock or a timestamp.
    private func liveTiming(_ s: Settings, start: GstClockTime) -> (deadline: Deadline?, clock: Bool)? {
        var total = gst_aggregator_get_latency(aggregator)
        if total == GstClockTime.max {
            guard s.live.forceLive else { return nil }
            total = latencyLock.withLock { latency.reported }
            if total == GstClockTime.max { total = 0 }
        }
        guard let clock = gst_element_get_clock(element) else { return (nil, false) }
        guard start != GstClockTime.max else {
            gst_object_unref(UnsafeMutableRawPointer(clock))
            return (nil, true)
        }
        return (Deadline(takingClock: clock, baseTime: gst_element_get_base_time(element), runningTime: start + total),
                true)
    }

    /// Live mode, source thread: how late a window would be (ns), or nil to edit it. Not while another edit runs
    /// (the window would wait behind it, and windows would queue up), nor when the last edit's time from now passes
    /// the deadline (but one window in `retryAfter` is tried anyway). Without a clock (`live=true` on a non-live
    /// upstream while it prerolls) no window is edited; without a timestamp one is edited when nothing else is.
    private func lateness(_ timing: (deadline: Deadline?, clock: Bool)) -> Int64? {
        guard timing.clock else { return 0 }
        guard let deadline = timing.deadline else { return state.inFlight == nil ? nil : 0 }
        let seconds = latencyLock.withLock { latency.nextEditSeconds }
        if let running = state.inFlight {
            // It could start when the running edit ends, at the latest at that edit's deadline.
            let wait = running.deadline.map { Double(Int64(bitPattern: UInt64($0.runningTime))
                                                     - Int64(bitPattern: UInt64(deadline.now))) / 1e9 } ?? 0
            return deadline.lateness(editing: max(wait, 0) + (seconds ?? 0))
        }
        guard let seconds else { return nil }
        let late = deadline.lateness(editing: seconds)
        if late < 0 || state.skippedSinceTry >= OCDEdit.retryAfter {
            state.skippedSinceTry = 0
            return nil
        }
        state.skippedSinceTry += 1
        return late
    }

    /// Source thread: a window that is not edited is pushed now, or after the windows still owed before it.
    private func enqueueUnedited(_ job: WindowJob) -> GstFlowReturn {
        if state.inFlight == nil && state.waiting.isEmpty { return push(job) }
        state.waiting.append(job)
        return GST_FLOW_OK
    }

    /// Source thread: what a late window's frames show (`outputs`; nil = the input frame): with last-edited, copies
    /// of the last frame pushed from an edited window of the same caps, carrying each late frame's timestamps.
    private func fillLateOutputs(_ job: WindowJob) {
        for case let b? in job.outputs { gst_buffer_unref(b) }
        job.outputs = []
        guard job.latePolicy == .lastEdited, let last = state.lastEdited,
              gst_caps_is_equal(last.caps.caps, job.caps.caps) != 0 else { return }
        job.outputs = job.buffers.map { input in
            guard let copy = gst_buffer_copy(last.buffer.buffer) else { return nil }
            copy.pointee.pts = input.buffer.pointee.pts
            copy.pointee.dts = input.buffer.pointee.dts
            copy.pointee.duration = input.buffer.pointee.duration
            copy.pointee.offset = input.buffer.pointee.offset
            copy.pointee.offset_end = input.buffer.pointee.offset_end
            return copy
        }
    }

    /// Source thread: counts a window that missed its deadline and posts its QoS message.
    private func reportLate(_ job: WindowJob) {
        let totals = live.late(frames: job.buffers.count)
        let first = job.buffers[0].buffer.pointee, last = job.buffers[job.buffers.count - 1].buffer.pointee
        var duration = GstClockTime.max
        if first.pts != GstClockTime.max, last.pts != GstClockTime.max, last.duration != GstClockTime.max {
            duration = last.pts + last.duration - first.pts
        }
        var segment = state.outputSegment
        let streamTime = first.pts == GstClockTime.max ? first.pts
            : gst_segment_to_stream_time(&segment, GST_FORMAT_TIME, first.pts)
        log(GST_LEVEL_INFO, "window \(job.number) late by \(Double(job.lateBy) / 1e6) ms: \(job.buffers.count) "
            + "frames \(job.latePolicy.rawValue), \(live.windowsLate) windows late since start")
        _ = gst_element_post_message(element, LiveQoS.message(
            from: element, runningTime: runningTime(videoPad, first.pts), streamTime: streamTime,
            timestamp: first.pts, duration: duration, jitter: job.lateBy, processed: totals.processed,
            dropped: totals.dropped))
    }

    // MARK: aggregation

    private func runningTime(_ p: UnsafeMutablePointer<GstAggregatorPad>, _ pts: GstClockTime) -> GstClockTime {
        guard pts != GstClockTime.max else { return pts }
        if p.pointee.segment.format == GST_FORMAT_TIME {
            return gst_segment_to_running_time(&p.pointee.segment, GST_FORMAT_TIME, pts)
        }
        return pts
    }

    func aggregate(timeout: Bool) -> GstFlowReturn {
        stateLock.lock(); defer { stateLock.unlock() }
        let r = aggregateStep()
        reportFlow(r)
        return r
    }

    /// A flow return that stops the stream without anyone saying why goes to the bus as an error, as
    /// GST_ELEMENT_FLOW_ERROR does in sources: with the src pad unlinked the aggregator only pauses its task, and an
    /// upstream that has already sent everything never hears of it (the pipeline would wait forever).
    private func reportFlow(_ r: GstFlowReturn) {
        guard r == GST_FLOW_NOT_LINKED || r == GST_FLOW_NOT_NEGOTIATED || r == GST_FLOW_NOT_SUPPORTED,
              !state.flowErrorPosted else { return }
        state.flowErrorPosted = true
        let name = String(cString: gst_flow_get_name(r))
        let why = r == GST_FLOW_NOT_LINKED ? "the src pad is not linked (link it to a downstream element)"
            : "downstream refused the frames (\(name))"
        ocd_post_message(element, GST_MESSAGE_ERROR, gst_stream_error_quark(), Int32(GST_STREAM_ERROR_FAILED.rawValue),
                         "Internal data stream error: \(why)", "streaming stopped, reason \(name) (\(r.rawValue))")
    }

    private func aggregateStep() -> GstFlowReturn {
        if let pending = state.pendingFlow {
            state.pendingFlow = nil
            return pending
        }
        let pushed = pushFinished()
        if pushed != GST_FLOW_OK { return pushed }
        guard let peeked = gst_aggregator_pad_peek_buffer(videoPad) else {
            if gst_aggregator_pad_is_eos(videoPad) != 0 { return drain() }
            return GST_FLOW_OK // nothing consumed: the aggregator waits for more data
        }
        let frame = BufferRef(owning: peeked)
        if gst_buffer_get_size(frame.buffer) == 0 && (frame.buffer.pointee.mini_object.flags
                                                       & GST_BUFFER_FLAG_GAP.rawValue) != 0 {
            _ = gst_aggregator_pad_drop_buffer(videoPad) // a gap buffer (from the parent class): not a frame
            return GST_FLOW_OK
        }
        let frameTime = runningTime(videoPad, frame.pts)

        // Masks up to this frame's running time: keep the newest; a later mask stays queued for later frames.
        var upcoming: Mask?
        while true {
            if let m = gst_aggregator_pad_peek_buffer(maskPad) {
                let maskBuffer = BufferRef(owning: m)
                let maskTime = runningTime(maskPad, maskBuffer.pts)
                if frameTime == GstClockTime.max || maskTime == GstClockTime.max || maskTime <= frameTime {
                    _ = gst_aggregator_pad_drop_buffer(maskPad)
                    if let mask = state.maskLayout?.readMask(maskBuffer.buffer) { state.lastMask = mask }
                    continue
                }
                if state.lastMask == nil { upcoming = state.maskLayout?.readMask(maskBuffer.buffer) }
                break
            }
            if gst_aggregator_pad_is_eos(maskPad) != 0 { break }
            return GST_FLOW_OK // nothing more consumed: wait for the mask stream to reach this frame
        }
        _ = gst_aggregator_pad_drop_buffer(videoPad)
        // Fallbacks: before the first mask, the first mask; with no mask at all, nil = the whole frame.
        state.window.append((frame, state.lastMask ?? upcoming))
        if state.window.count >= currentSettings.windowSize { return dispatchWindow() }
        return GST_FLOW_OK
    }

    /// EOS on the video pad: edit the partial window, push everything, end the stream.
    private func drain() -> GstFlowReturn {
        let r = finishWindows(fromEvent: false)
        return r == GST_FLOW_OK ? GST_FLOW_EOS : r
    }

    /// Hands the filled window to the worker, after pushing the previous one (one window in flight at most: the
    /// inputs wait for one window's edit at most). Live mode never waits: a window that cannot be edited in time
    /// (another edit running, or the last edit's time from now past its deadline) leaves unedited, after the
    /// windows owed before it; so does every window after an EOS that cancels.
    private func dispatchWindow() -> GstFlowReturn {
        let settings = currentSettings
        let start = state.window.first.map { runningTime(videoPad, $0.buffer.pts) } ?? GstClockTime.max
        let timing = liveTiming(settings, start: start)
        if timing == nil {
            let r = pushOwed(wait: true)
            if r != GST_FLOW_OK { return r }
        }
        guard let layout = state.videoLayout, let caps = state.videoCaps else {
            post(error: "sink pad: buffers arrived before caps")
            state.flowErrorPosted = true
            return GST_FLOW_NOT_NEGOTIATED
        }
        if let rejection = settings.rejection {
            post(EditorFailure(.settings, rejection))
            return GST_FLOW_ERROR
        }
        // A model or prompt set while playing can make the current size one the canvas bound refuses.
        if let refusal = canvasRefusal(layout, settings) {
            post(error: "sink pad: \(refusal)", code: Int32(GST_STREAM_ERROR_FORMAT.rawValue))
            return GST_FLOW_ERROR
        }
        let full = Mask.full(width: layout.width, height: layout.height)
        let job = WindowJob(number: state.windows, buffers: state.window.map(\.buffer),
                            masks: state.window.map { $0.mask ?? full }, layout: layout, caps: caps,
                            settings: settings.editor)
        job.events = state.windowEvents
        job.deadline = timing?.deadline
        job.latePolicy = settings.live.latePolicy
        state.windows += 1
        state.window = []
        state.windowEvents = []
        if eosCancel.isSet {
            job.late = .eos
        } else if let timing, let by = lateness(timing) {
            (job.late, job.lateBy) = (.deadline, by)
        }
        if job.late != nil {
            log(GST_LEVEL_DEBUG, "window \(job.number) not edited (\(job.late!)): \(job.buffers.count) frames")
            return enqueueUnedited(job)
        }
        state.inFlight = job
        log(GST_LEVEL_DEBUG,
            "window \(job.number) dispatched: \(job.buffers.count) frames from pts \(job.buffers[0].pts)")
        // The element stays alive until the source thread has been woken for this window.
        gst_object_ref(UnsafeMutableRawPointer(element))
        worker.async { [self] in
            run(job)
            waker.async { [self] in
                wakeAggregator()
                gst_object_unref(UnsafeMutableRawPointer(element))
            }
        }
        return GST_FLOW_OK
    }

    /// Source thread: pushes the window in flight if its edit has ended, and the late windows behind it.
    private func pushFinished() -> GstFlowReturn { pushOwed(wait: false) }

    /// Source thread: pushes the window in flight (waiting for its edit with `wait`, else only if it has ended), then
    /// the late windows owed behind it, in order.
    private func pushOwed(wait: Bool) -> GstFlowReturn {
        if let job = state.inFlight {
            if wait {
                job.done.wait()
            } else if job.done.wait(timeout: .now()) != .success {
                return GST_FLOW_OK
            }
            state.inFlight = nil
            let r = push(job)
            if r != GST_FLOW_OK { return r }
        }
        while !state.waiting.isEmpty {
            let r = push(state.waiting.removeFirst())
            if r != GST_FLOW_OK { return r }
        }
        return GST_FLOW_OK
    }

    /// `waker` queue, after each edit: `aggregate` runs only when every sink pad holds data, so with no input coming
    /// (upstream waiting on this element's output, e.g. a tee whose other branch is full) a finished window would
    /// wait forever. A custom serialized event wakes the source thread, which pushes the window from `sinkEvent`. It
    /// goes to each pad with no queued buffer (events queue behind buffers; a buffer may land on one pad just before
    /// the event, and a second wake-up is a no-op); when both pads hold one, `aggregate` is about to run and pushes
    /// the window itself. A flushing or EOS pad refuses the event.
    /// Sending waits for the pad's stream lock while upstream's chain call waits for room on that pad (until
    /// `aggregate` takes the buffer there), so it runs on `waker`: the worker meanwhile edits the next window, which
    /// that `aggregate` may be waiting for.
    private func wakeAggregator() {
        for p in [videoPad, maskPad] where gst_aggregator_pad_has_buffer(p) == 0 {
            let event = gst_event_new_custom(GST_EVENT_CUSTOM_DOWNSTREAM,
                                             gst_structure_new_empty(OCDEdit.wakeEventName))
            _ = gst_pad_send_event(pad(p), event)
        }
    }

    /// Worker thread: hold the window's model (a `model` change while playing loads here, untimed), then convert,
    /// edit and convert back.
    /// The edit is cancelled between diffusion steps by a flush or stop, an EOS that cancels, or (live) its deadline;
    /// the latter two leave the window unedited (`late`), not failed.
    private func run(_ job: WindowJob) {
        defer { job.done.signal() }
        let cancel = self.cancel, eosCancel = self.eosCancel, deadline = job.deadline
        let stop: @Sendable () -> Bool = { cancel.isSet || eosCancel.isSet || deadline?.passed == true }
        do throws(EditorFailure) {
            if stop() { throw EditorFailure(.cancelled, "cancelled") }
            try holdModel(job.settings.modelPath)
            let start = DispatchTime.now()
            defer { job.seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }
            try edit(job, isCancelled: stop)
        } catch {
            job.failure = error
        }
        if job.failure?.kind == .cancelled && !cancel.isSet {
            job.failure = nil
            job.late = eosCancel.isSet ? .eos : .deadline
            job.lateBy = deadline.map { Int64(bitPattern: UInt64($0.now)) - Int64(bitPattern: UInt64($0.runningTime)) }
                ?? 0
            if job.late == .deadline {
                latencyLock.withLock { latency.nextEditSeconds = 2 * job.seconds }
            }
        } else if job.edited {
            latencyLock.withLock { latency.nextEditSeconds = job.seconds }
        }
        let changed = job.outputs.compactMap { $0 }.count
        log(GST_LEVEL_DEBUG, "window \(job.number) finished in \(job.seconds) s: "
            + (job.failure.map { "\($0.kind): \($0.message)" } ?? "\(changed) frames changed"))
    }

    private func edit(_ job: WindowJob, isCancelled: @escaping @Sendable () -> Bool) throws(EditorFailure) {
        var frames: [Frame] = []
        for b in job.buffers {
            guard let f = job.layout.readFrame(b.buffer) else {
                throw EditorFailure(.edit, "could not map an input frame for reading")
            }
            frames.append(f)
        }
        let masks = zip(frames, job.masks).map { $1.scaled(width: $0.width, height: $0.height) }
        let outcome = try session.edit(frames: frames, masks: masks, settings: job.settings,
                                       isCancelled: isCancelled)
        if let warning = outcome.warning { post(warning: warning) }
        guard let edited = outcome.frames else {
            job.outputs = job.buffers.map { _ in nil }
            return
        }
        job.edited = true
        guard edited.count == frames.count else {
            throw EditorFailure(.edit, "editor returned \(edited.count) frames for a window of \(frames.count)")
        }
        for (i, out) in edited.enumerated() {
            let input = frames[i]
            if out == input { job.outputs.append(nil); continue }
            guard out.format == input.format, out.width == input.width, out.height == input.height,
                  let b = job.layout.writeFrame(out, like: job.buffers[i].buffer) else {
                throw EditorFailure(.edit, "editor returned a frame of another format or size")
            }
            job.outputs.append(b)
        }
    }

    /// The `progress` element message of a window just pushed (Progress.swift).
    private func postProgress(_ job: WindowJob) {
        let total = WindowProgress.totalFrames(upstreamOf: pad(videoPad), fpsN: job.layout.info.fps_n,
                                               fpsD: job.layout.info.fps_d)
        let report = progress.windowPushed(number: job.number, count: job.buffers.count, seconds: job.seconds,
                                           steps: job.settings.steps, total: total)
        _ = gst_element_post_message(element, WindowProgress.message(report, from: element))
    }

    /// Source thread: push a finished window downstream (or report its error).
    private func push(_ job: WindowJob) -> GstFlowReturn {
        if let failure = job.failure {
            if failure.kind == .cancelled { return GST_FLOW_FLUSHING }
            post(failure.kind == .edit ? EditorFailure(.edit, "editing a window failed: \(failure.message)") : failure)
            return GST_FLOW_ERROR
        }
        if let reason = job.late {
            fillLateOutputs(job)
            if reason == .deadline { reportLate(job) }
        } else if job.edited {
            live.edited(frames: job.buffers.count)
        }
        // The window's own caps: frames never leave under caps that came after them.
        setOutputCaps(job.caps)
        var events = job.events[...]
        func pushEvents(after count: Int) {
            while let first = events.first, first.after <= count {
                events = events.dropFirst()
                pushEvent(first.event)
            }
        }
        for i in job.buffers.indices {
            pushEvents(after: i)
            let out: UnsafeMutablePointer<GstBuffer>
            if i < job.outputs.count, let edited = job.outputs[i] {
                out = edited
                job.outputs[i] = nil
            } else {
                out = gst_buffer_ref(job.buffers[i].buffer)
            }
            if job.edited && i == job.buffers.count - 1 {
                state.lastEdited = (BufferRef(owning: gst_buffer_ref(out)), job.caps)
            }
            let r = gst_aggregator_finish_buffer(aggregator, out)
            if r != GST_FLOW_OK { return r }
            state.segmentUnsent = false // the aggregator sends a pending segment before a buffer
        }
        pushEvents(after: job.buffers.count)
        log(GST_LEVEL_DEBUG, "window \(job.number) pushed")
        postProgress(job)
        let estimate = GstClockTime(job.seconds * 1e9)
        let longer = latencyLock.withLock {
            guard job.edited, estimate > latency.processingEstimate else { return false }
            latency.processingEstimate = estimate
            return true
        }
        if longer { updateLatency() }
        return GST_FLOW_OK
    }
}
