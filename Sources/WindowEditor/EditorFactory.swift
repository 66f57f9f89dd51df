/// Chooses the editor for the element's settings.
public enum EditorFactory {
    /// Returns the editor, and a warning for the bus when the element will not edit.
    public static func make(settings: EditorSettings) throws -> (editor: WindowEditing, warning: String?) {
        if settings.previewMask {
            return (MaskPreviewEditor(threshold: settings.maskThreshold), nil)
        }
        guard let model = settings.modelPath, !model.isEmpty else {
            return (PassthroughEditor(), "no model set (property 'model'): frames pass through unedited")
        }
        guard let prompt = settings.prompt, !prompt.isEmpty else {
            return (PassthroughEditor(), "no prompt set (property 'prompt'): frames pass through unedited")
        }
        return (try DiffusionWindowEditor(settings: settings), nil)
    }
}
