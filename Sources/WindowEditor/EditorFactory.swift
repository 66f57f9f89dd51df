/// Chooses the editor for the element's settings.
public enum EditorFactory {
    /// Returns the editor, and a warning for the bus when the element will not edit. Loads `settings.modelPath`.
    public static func make(settings: EditorSettings) throws -> (editor: WindowEditing, warning: String?) {
        try make(settings: settings) { try DiffusionWindowEditor(settings: settings) }
    }

    /// The same choice on an already loaded model (`EditorSession`: settings change per window, weights do not).
    public static func make(settings: EditorSettings, model: SharedModel) throws
        -> (editor: WindowEditing, warning: String?) {
        try make(settings: settings) { try DiffusionWindowEditor(pipeline: model.pipeline, settings: settings) }
    }

    private static func make(settings: EditorSettings, diffusion: () throws -> WindowEditing) throws
        -> (editor: WindowEditing, warning: String?) {
        if settings.previewMask {
            return (MaskPreviewEditor(threshold: settings.maskThreshold), nil)
        }
        guard let model = settings.modelPath, !model.isEmpty else {
            return (PassthroughEditor(), "no model set (property 'model'): frames pass through unedited")
        }
        guard let prompt = settings.prompt, !prompt.isEmpty else {
            return (PassthroughEditor(), "no prompt set (property 'prompt'): frames pass through unedited")
        }
        return (try diffusion(), nil)
    }
}
