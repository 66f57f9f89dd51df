// What `ocdedit edit` shows while the element works, from its bus messages: the model load (PROGRESS, code
// `loading`) and one `progress` element message per window. On a terminal one line is redrawn (a bar, frames and
// windows done, seconds per window, ETA, elapsed time); otherwise one plain line per event, for logs.
import Foundation

/// The fields of the element's `progress` message that the display uses.
struct WindowProgressMessage {
    var window: Int
    var current: Int64
    var total: Int64
    var seconds: Double
    var eta: Double
}

final class EditProgressDisplay {
    private let terminal: Bool
    private let windowSize: Int
    /// Frames in the input when the command knows them itself (PNG sequences); the element's total wins.
    private let knownFrames: Int64?
    private let out: FileHandle
    private let started = Date()
    private var loadingSince: Date?
    /// The load's start as the message's own timestamp (ns): both messages may wait on the bus for the state change.
    private var loadingStamp: UInt64?
    private var windows = 0
    private var frames: Int64 = 0
    private var total: Int64?
    private var editSeconds = 0.0
    private var eta: Double?
    private var lastDraw = Date.distantPast

    init(terminal: Bool, windowSize: Int, knownFrames: Int?, out: FileHandle = .standardError) {
        self.terminal = terminal
        self.windowSize = max(1, windowSize)
        self.knownFrames = knownFrames.map(Int64.init)
        self.out = out
        total = self.knownFrames
    }

    var framesDone: Int64 { frames }
    var windowsDone: Int { windows }

    func loadingStarted(_ text: String, stamp: UInt64) {
        loadingSince = Date()
        loadingStamp = stamp
        if terminal { draw() } else { line(text) }
    }

    /// The load ended; `failed`: the error that follows on the bus says why, so nothing is printed here.
    func loadingEnded(_ text: String, failed: Bool, stamp: UInt64) {
        let seconds = loadingStamp.map { Double(stamp &- $0) / 1e9 } ?? 0
        loadingSince = nil
        loadingStamp = nil
        if failed { return }
        if terminal { draw() } else { line(text + String(format: " (%.1f s)", seconds)) }
    }

    func window(_ m: WindowProgressMessage) {
        windows = m.window + 1
        frames = m.current
        editSeconds += m.seconds
        if m.total >= 0 { total = m.total }
        if m.total >= 0 && m.eta >= 0 {
            eta = m.eta
        } else if let total, frames > 0 {
            eta = editSeconds / Double(frames) * Double(max(0, total - frames))
        }
        if terminal { draw() } else { line(plainWindowLine(m)) }
    }

    /// Redraws the terminal line once a second (the elapsed time moves while a window is being edited).
    func tick() {
        guard terminal, Date().timeIntervalSince(lastDraw) >= 1 else { return }
        draw()
    }

    /// Ends the terminal line before anything else is printed.
    func finish() {
        if terminal && lastDraw != .distantPast { write("\n") }
        lastDraw = .distantPast
    }

    private var windowsTotal: Int64? { total.map { ($0 + Int64(windowSize) - 1) / Int64(windowSize) } }
    private var secondsPerWindow: Double? { windows > 0 ? editSeconds / Double(windows) : nil }

    private func plainWindowLine(_ m: WindowProgressMessage) -> String {
        var text = "window \(windows)" + (windowsTotal.map { "/\($0)" } ?? "") + " done: frames \(frames)"
        if let total, total > 0 { text += "/\(total) (\(Int(100 * Double(frames) / Double(total)))%)" }
        text += String(format: ", %.1f s this window", m.seconds)
        if let s = secondsPerWindow { text += String(format: ", %.1f s/window", s) }
        if let eta { text += ", ETA \(Self.clock(eta))" }
        return text
    }

    private func terminalLine() -> String {
        let elapsed = Self.clock(Date().timeIntervalSince(started))
        if loadingSince != nil { return "loading model … \(elapsed)" }
        if windows == 0 { return "editing the first window (\(windowSize) frames) …  elapsed \(elapsed)" }
        let width = 24
        var text: String
        if let total, total > 0 {
            let fraction = min(1, Double(frames) / Double(total))
            let filled = Int(fraction * Double(width))
            text = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] "
                + String(format: "%3d%%", Int(fraction * 100)) + "  frames \(frames)/\(total)"
        } else {
            text = "frames \(frames)"
        }
        text += "  windows \(windows)" + (windowsTotal.map { "/\($0)" } ?? "")
        if let s = secondsPerWindow { text += String(format: "  %.1f s/window", s) }
        if let eta { text += "  ETA \(Self.clock(eta))" }
        return text + "  elapsed \(elapsed)"
    }

    private func draw() {
        lastDraw = Date()
        write("\r\u{1B}[2K" + terminalLine())
    }

    private func line(_ text: String) { write("ocdedit: " + text + "\n") }

    private func write(_ text: String) { out.write(Data(text.utf8)) }

    /// m:ss, or h:mm:ss from an hour on.
    static func clock(_ seconds: Double) -> String {
        let s = max(0, Int(seconds.rounded()))
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
            : String(format: "%d:%02d", s / 60, s % 60)
    }
}
