// What the user configures (GObject properties). Kept apart from `State` (what the element is doing).
import WindowEditor

struct Settings: Equatable {
    /// `window-size`: frames per edited window (range and default: `WindowSizeSetting`).
    var windowSize = WindowSizeSetting.defaultValue
    /// Everything else, handed to the editor with each window.
    var editor = EditorSettings()
    /// Live mode and EOS (LiveSettings.swift): element-only, never handed to the editor.
    var live = LiveSettings()
    /// Values the property table refused (property name → why), while no later valid value replaced them. The element
    /// does not start with one (RESOURCE/SETTINGS error) and stops at the next window if one comes in while playing.
    var rejected: [String: String] = [:]

    /// The table's message (it names the property) of the first refused value, or nil.
    var rejection: String? { rejected.sorted { $0.key < $1.key }.first?.value }
}
