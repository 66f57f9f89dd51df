// GObject properties of ocdedit: name, nick, blurb, range and default (all shown by gst-inspect-1.0).
import CGStreamer
import CGstShim
import WindowEditor

private let readWrite = GParamFlags(rawValue: G_PARAM_READABLE.rawValue | G_PARAM_WRITABLE.rawValue)
/// GST_PARAM_MUTABLE_PLAYING (1 << (G_PARAM_USER_SHIFT + 4)): the property may change while PLAYING;
/// a change applies from the next window on.
private let mutablePlaying = GParamFlags(rawValue: readWrite.rawValue | (1 << 12))

/// One property: how to declare it and how to move it between `Settings` and a GValue.
struct PropertyDefinition {
    let name: String
    let makeSpec: () -> UnsafeMutablePointer<GParamSpec>
    let set: (inout Settings, UnsafePointer<GValue>) -> Void
    let get: (Settings, UnsafeMutablePointer<GValue>) -> Void
}

private func intProperty(_ name: String, _ nick: String, _ blurb: String, _ range: ClosedRange<Int>, _ def: Int,
                         _ kp: WritableKeyPath<Settings, Int>) -> PropertyDefinition {
    PropertyDefinition(name: name, makeSpec: {
        g_param_spec_int(name, nick, blurb, gint(range.lowerBound), gint(range.upperBound), gint(def), mutablePlaying)
    }, set: { s, v in s[keyPath: kp] = Int(g_value_get_int(v)) },
       get: { s, v in g_value_set_int(v, gint(s[keyPath: kp])) })
}

private func doubleProperty(_ name: String, _ nick: String, _ blurb: String, _ range: ClosedRange<Double>, _ def: Double,
                            _ kp: WritableKeyPath<Settings, Double>) -> PropertyDefinition {
    PropertyDefinition(name: name, makeSpec: {
        g_param_spec_double(name, nick, blurb, range.lowerBound, range.upperBound, def, mutablePlaying)
    }, set: { s, v in s[keyPath: kp] = g_value_get_double(v) },
       get: { s, v in g_value_set_double(v, s[keyPath: kp]) })
}

private func boolProperty(_ name: String, _ nick: String, _ blurb: String, _ def: Bool,
                          _ kp: WritableKeyPath<Settings, Bool>) -> PropertyDefinition {
    PropertyDefinition(name: name, makeSpec: {
        g_param_spec_boolean(name, nick, blurb, def ? 1 : 0, mutablePlaying)
    }, set: { s, v in s[keyPath: kp] = g_value_get_boolean(v) != 0 },
       get: { s, v in g_value_set_boolean(v, s[keyPath: kp] ? 1 : 0) })
}

private func stringProperty(_ name: String, _ nick: String, _ blurb: String, _ def: String?,
                            get: @escaping (Settings) -> String?, set: @escaping (inout Settings, String?) -> Void) -> PropertyDefinition {
    PropertyDefinition(name: name, makeSpec: {
        g_param_spec_string(name, nick, blurb, def, mutablePlaying)
    }, set: { s, v in set(&s, g_value_get_string(v).map { String(cString: $0) }) },
       get: { s, v in g_value_set_string(v, get(s)) })
}

/// A GEnum type registered once per process from a Swift `CaseIterable` string enum.
private func registerEnum<E: RawRepresentable & CaseIterable>(_ typeName: String, _: E.Type) -> GType where E.RawValue == String {
    let existing = g_type_from_name(typeName)
    if existing != 0 { return existing }
    let cases = Array(E.allCases)
    let values = UnsafeMutablePointer<GEnumValue>.allocate(capacity: cases.count + 1)
    for (i, c) in cases.enumerated() {
        values[i] = GEnumValue(value: gint(i), value_name: staticCString(c.rawValue), value_nick: staticCString(c.rawValue))
    }
    values[cases.count] = GEnumValue(value: 0, value_name: nil, value_nick: nil)
    return g_enum_register_static(typeName, values)
}

private func enumProperty<E: RawRepresentable & CaseIterable & Equatable>(
    _ name: String, _ nick: String, _ blurb: String, typeName: String, _ def: E, _ kp: WritableKeyPath<Settings, E>
) -> PropertyDefinition where E.RawValue == String {
    let cases = Array(E.allCases)
    return PropertyDefinition(name: name, makeSpec: {
        g_param_spec_enum(name, nick, blurb, registerEnum(typeName, E.self), gint(cases.firstIndex(of: def)!), mutablePlaying)
    }, set: { s, v in
        let i = Int(g_value_get_enum(v))
        if cases.indices.contains(i) { s[keyPath: kp] = cases[i] }
    }, get: { s, v in g_value_set_enum(v, gint(cases.firstIndex(of: s[keyPath: kp])!)) })
}

/// Property ids are the index in this table + 1.
let propertyTable: [PropertyDefinition] = {
    let d = EditorSettings()
    return [
        intProperty("window-size", "Window size", "Frames buffered and edited together (latency grows with it)",
                    Settings.windowSizeRange, 8, \.windowSize),
        stringProperty("model", "Model folder",
                       "Folder of a diffusers-layout Stable Diffusion 1.x/2.x pipeline (unet/ vae/ text_encoder/ tokenizer/ scheduler/); unset = pass-through",
                       nil, get: { $0.editor.modelPath }, set: { $0.editor.modelPath = $1 }),
        stringProperty("prompt", "Prompt", "Target prompt of the edit; unset = pass-through",
                       nil, get: { $0.editor.prompt }, set: { $0.editor.prompt = $1 }),
        stringProperty("source-prompt", "Source prompt", "Prompt describing the input video, used for DDIM inversion",
                       "", get: { $0.editor.sourcePrompt }, set: { $0.editor.sourcePrompt = $1 ?? "" }),
        stringProperty("negative-prompt", "Negative prompt", "Unconditional prompt of classifier-free guidance",
                       "", get: { $0.editor.negativePrompt }, set: { $0.editor.negativePrompt = $1 ?? "" }),
        intProperty("steps", "Steps", "DDIM steps of the full schedule", 1...1000, d.steps, \.editor.steps),
        doubleProperty("guidance-scale", "Guidance scale", "Classifier-free guidance scale (1 = no guidance)",
                       1.0...30.0, d.guidanceScale, \.editor.guidanceScale),
        doubleProperty("strength", "Strength", "Share of the schedule that is inverted and re-denoised",
                       0.0...1.0, d.strength, \.editor.strength),
        PropertyDefinition(name: "seed", makeSpec: {
            g_param_spec_uint64("seed", "Seed", "Seed of every random choice; equal seeds give identical output",
                                0, guint64(UInt32.max), guint64(d.seed), mutablePlaying)
        }, set: { s, v in s.editor.seed = UInt64(g_value_get_uint64(v)) },
           get: { s, v in g_value_set_uint64(v, guint64(s.editor.seed)) }),
        intProperty("mask-threshold", "Mask threshold", "Mask value at or above which a pixel is foreground",
                    0...255, d.maskThreshold, \.editor.maskThreshold),
        boolProperty("preview-mask", "Preview mask",
                     "Tint the masked area instead of editing (checks mask alignment at full speed)",
                     d.previewMask, \.editor.previewMask),
        intProperty("processing-size", "Processing size",
                    "Short side of the processing resolution in pixels (multiple of 64; aspect kept)",
                    64...2048, d.processingSize, \.editor.processingSize),
        enumProperty("mode", "Mode",
                     "Editing method: ocd, baseline (OCD off), blended (automatic mask from cross-attention), tokenflow (keyframes + propagation); reatco is not implemented yet",
                     typeName: "GstOCDEditMode", d.mode, \.editor.mode),
        boolProperty("ocd-sampling", "OCD sampling",
                     "Object-centric sampling: denoise only the foreground crop before the blend step",
                     d.ocdSampling, \.editor.ocdSampling),
        doubleProperty("blend-step", "Blend step",
                       "Fraction of the edit run on the foreground crop before the whole frame is denoised jointly",
                       0.0...1.0, d.blendStep, \.editor.blendStep),
        intProperty("background-steps", "Background steps",
                    "Full-frame UNet steps spent on the background's inverted trajectory up to the blend step (0 = one per step)",
                    0...1000, d.backgroundSteps, \.editor.backgroundSteps),
        intProperty("inversion-iterations", "Inversion iterations",
                    "Fixed-point iterations per DDIM inversion step (1 = plain DDIM inversion; more = closer reconstruction)",
                    1...20, d.inversionIterations, \.editor.inversionIterations),
        doubleProperty("blend-threshold", "Blend threshold",
                       "mode=blended: share of the peak of the edited words' cross-attention at or above which a cell is edited",
                       0.0...1.0, d.blendThreshold, \.editor.blendThreshold),
        intProperty("keyframe-interval", "Keyframe interval",
                    "mode=tokenflow: one keyframe every this many frames (random offset per step); 1 = every frame",
                    1...64, d.keyframeInterval, \.editor.keyframeInterval),
        boolProperty("preserve-background", "Preserve background",
                     "Replace the latent outside the dilated mask by the inverted trajectory at every step",
                     d.preserveBackground, \.editor.preserveBackground),
        intProperty("context-margin", "Context margin", "Margin in latent pixels around the mask's box of the foreground crop",
                    0...64, d.contextMargin, \.editor.contextMargin),
        doubleProperty("tome-ratio", "Token merging ratio", "Share of self-attention key/value tokens merged",
                       0.0...0.9, d.tomeRatio, \.editor.tomeRatio),
        doubleProperty("tome-foreground-weight", "Token merging foreground weight",
                       "How strongly saliency protects foreground tokens from merging",
                       0.0...1.0, d.tomeForegroundWeight, \.editor.tomeForegroundWeight),
        intProperty("tome-frames", "Token merging frames", "Frames in one spatiotemporal merging volume",
                    1...64, d.tomeFrames, \.editor.tomeFrames),
        enumProperty("cross-frame", "Cross-frame attention",
                     "Frames whose keys/values self-attention sees: none, first-previous, first-previous-middle, all",
                     typeName: "GstOCDEditCrossFrame", d.crossFrame, \.editor.crossFrame),
        intProperty("feather", "Feather", "Width in pixels of the soft edge of the composite mask",
                    0...256, d.feather, \.editor.feather),
    ]
}()
