// The `ocdedit` GST_DEBUG category (e.g. GST_DEBUG=ocdedit:5): property changes and refusals (INFO/WARNING), model
// loads (INFO), windows dispatched and finished with their edit time (DEBUG).
import CGStreamer

enum Log {
    static let category: UnsafeMutablePointer<GstDebugCategory> =
        _gst_debug_category_new("ocdedit", 0, "ocdedit: object-centric diffusion video editor")

    /// Logs `message` (built only when the category's threshold lets `level` through) against `object`.
    static func at(_ level: GstDebugLevel, _ object: UnsafeMutableRawPointer?, _ message: @autoclosure () -> String,
                   file: String = #fileID, function: String = #function, line: Int = #line) {
        guard gst_debug_category_get_threshold(category).rawValue >= level.rawValue else { return }
        gst_debug_log_literal(category, level, file, function, gint(line),
                              object?.assumingMemoryBound(to: GObject.self), message())
    }
}
