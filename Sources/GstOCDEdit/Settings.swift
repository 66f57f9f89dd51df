// What the user configures (GObject properties). Kept apart from `State` (what the element is doing).
import WindowEditor

struct Settings: Equatable {
    /// `window-size`: frames per edited window, 1…64. Default 8.
    var windowSize: Int = 8
    var editor = EditorSettings()
}

extension Settings {
    static let windowSizeRange = 1...64
}
