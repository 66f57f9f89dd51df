import Foundation

/// Wall-clock time per kernel kind, for finding where a forward pass goes (`OCDEDIT_PROFILE=1`; `ocdedit bench`
/// prints the table). Off by default: then `measure` is one branch on a constant.
public enum Profiler {
    public static let enabled = ProcessInfo.processInfo.environment["OCDEDIT_PROFILE"] == "1"
    private static let lock = NSLock()
    nonisolated(unsafe) private static var totals: [String: (seconds: Double, calls: Int)] = [:]

    @inline(__always)
    public static func measure<T>(_ kind: @autoclosure () -> String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let name = kind()
        lock.lock()
        let old = totals[name] ?? (0, 0)
        totals[name] = (old.seconds + elapsed, old.calls + 1)
        lock.unlock()
        return result
    }

    public static func reset() { lock.lock(); totals = [:]; lock.unlock() }

    /// One line per kind, largest first: seconds, share of the measured total, calls.
    public static func report() -> String {
        lock.lock(); defer { lock.unlock() }
        let total = totals.values.reduce(0) { $0 + $1.seconds }
        return totals.sorted { $0.value.seconds > $1.value.seconds }.map {
            String(format: "%@ %8.3f s %5.1f%% %7d calls", $0.key.padding(toLength: 18, withPad: " ", startingAt: 0),
                   $0.value.seconds, 100 * $0.value.seconds / max(total, 1e-12), $0.value.calls)
        }.joined(separator: "\n")
            + String(format: "\n%@ %8.3f s", "total".padding(toLength: 18, withPad: " ", startingAt: 0), total)
    }
}
