// The element's live-mode and EOS settings (element-only, like `WindowSizeSetting`): each property's name, blurb,
// range or choices and default live here once; Properties.swift registers them, the README's table is checked
// against what the element registers (ElementLifetimeTests).

/// `live`: live mode without a live upstream.
enum LiveSetting {
    static let name = "live"
    static let blurb = "Run in live mode even when upstream's latency query says the stream is not live (a live "
        + "upstream turns it on by itself): windows that would miss their deadline are not edited"
    static let defaultValue = false
}

/// `processing-latency`: the edit budget added to the window in the latency answer.
enum ProcessingLatencySetting {
    static let name = "processing-latency"
    static let blurb = "Edit budget in ms that the latency answer adds to the window's duration; -1 = the longest "
        + "edit measured so far (1000 ms before the first, 0 when nothing is edited)"
    static let range = -1...3_600_000
    static let defaultValue = -1
    /// The budget of `-1` before any edit has been measured, with a model and a prompt set.
    static let unmeasuredMilliseconds = 1000
}

/// `late-policy`: what a window that is not edited in time shows.
enum LatePolicy: String, CaseIterable, Equatable {
    /// The window's own input frames, untouched.
    case passThrough = "pass-through"
    /// The last frame that left an edited window, with the late frame's timestamps (pass-through before any edit
    /// or after a size change).
    case lastEdited = "last-edited"

    static let name = "late-policy"
    static let blurb = "Live mode, and EOS with eos-policy=cancel: what a window that is not edited in time shows: "
        + "pass-through (its input frames) or last-edited (the last frame of an edited window)"
    static let defaultValue = LatePolicy.passThrough
}

/// `eos-policy`: what EOS does to the windows still owed.
enum EOSPolicy: String, CaseIterable, Equatable {
    /// `cancel` when the stream is live, `finish` otherwise.
    case auto
    /// Edit every owed window to the end before EOS goes on.
    case finish
    /// Stop the running edit within one diffusion step and push every owed frame as late-policy says.
    case cancel

    static let name = "eos-policy"
    static let blurb = "At EOS: finish (edit the owed windows), cancel (stop the running edit within one diffusion "
        + "step and push the owed frames as late-policy says), auto (cancel when live, else finish)"
    static let defaultValue = EOSPolicy.auto
}

/// `windows-late`: read-only counter.
enum WindowsLateCounter {
    static let name = "windows-late"
    static let blurb = "Read-only: windows pushed unedited since start because their edit would miss, or missed, "
        + "its deadline (live mode)"
}

/// What the user asked for about live streams and EOS (part of `Settings`).
struct LiveSettings: Equatable {
    var forceLive = LiveSetting.defaultValue
    var processingLatencyMs = ProcessingLatencySetting.defaultValue
    var latePolicy = LatePolicy.defaultValue
    var eosPolicy = EOSPolicy.defaultValue
}
