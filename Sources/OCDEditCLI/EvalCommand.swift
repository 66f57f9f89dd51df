import ArgumentParser
import EvalKit
import Foundation
import StableDiffusion
import WindowEditor

/// Runs `body`; any error becomes one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch let e as ExitCode { throw e } catch {
        FileHandle.standardError.write(Data("error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// window-size's range in help texts (`WindowSizeSetting` holds it for every front end).
let windowSizeRange = "\(WindowSizeSetting.range.lowerBound)…\(WindowSizeSetting.range.upperBound)"

/// `ocdedit eval`: the window editor over evaluation clips (world.py's format), a table per clip and, as the last
/// line, one JSON object with the pooled metrics (EvalTally documents each).
struct EvalCommand: ParsableCommand {
    /// Editor settings the command line may set; prompts come from each clip, the model and mode from own options.
    static let settingNames = EditorSettings.fields.map(\.name)
        .filter { !["model", "prompt", "source-prompt", "mode", "preview-mask"].contains($0) }

    static let nativeSizeText = "the model's native size: UNet sample_size x VAE downscale factor"

    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Edit evaluation clips with the window editor and score them against ground truth; last line JSON.",
        discussion: """
        --clips is a folder of clips as Models/shapes-sd/train/world.py --out writes them (clip-NNNN/clip.json, \
        frames/NNNN.ppm, masks/NNNN.pgm), or one clip folder. Each clip is edited from its source_prompt to its \
        target_prompt in windows of --window-size frames with its masks (mode=blended gets full-frame masks: the \
        automatic mask must find the object). Metrics, pooled over all clips and frames:
          edit_accuracy: share of frames whose edited object's mean output colour (over the clip mask eroded by \
        2 px, or the plain mask if erosion empties it) is nearest (Euclidean RGB) to the target colour among the \
        clip's palette (the source colour with --null-edit).
          background_exact: share of pixels beyond the feathered clip mask (the editor's feathered alpha of the \
        ground-truth mask, at the run's mask-threshold and feather, exactly 0) whose output bytes equal the input's.
          warp_error: mean absolute difference (0-255, over RGB channels and pixels) between output frames f-1 and f \
        after the ground-truth displacement d of frame f: |out_f[p] - out_f-1[p - d]| over p in frame f's eroded \
        mask with p - d inside the frame; pairs inside one window only (null if none).
          boundary_warp_error: the same over pairs that straddle two windows (null if none).
          mask_iou: mode=blended only: sum of intersections / sum of unions of the editor's composite mask and the \
        clip mask over frames (null in other modes).
          psnr: dB, peak 255, of output vs input over whole frames (null when identical).
          seconds: wall-clock seconds of the edits, not the model load.
        Layout clips (world.py --layout; mode=reatco's: label masks, each region asking for words of the target \
        prompt) are scored by background_exact and psnr with the regions' union as the mask, and instead of \
        edit_accuracy and warp errors (null there) by:
          region_accuracy: share of frames in which every region has a majority of output pixels whose nearest \
        colour (among the clip's region_palette) is its words' colour.
          outside_psnr: dB of output vs input over the pixels outside every region.
        mode=reatco reads a layout clip's label masks through region-words (set from the clip unless --regions is \
        given); other modes get the regions' union as the mask.
        JSON keys: clips, frames, mode, edit_accuracy, background_exact, warp_error, boundary_warp_error, mask_iou, \
        psnr, region_accuracy, outside_psnr, seconds.

        Editor settings (the element's property names), as --name value or --name=value:
        \(SettingArguments.help(settingNames, defaultText: ["processing-size": nativeSizeText]))
        """)

    @Option(help: "Diffusers pipeline folder (unet/ vae/ text_encoder/ tokenizer/ scheduler/).") var model: String
    @Option(help: "Folder of clip folders, or one clip folder (with clip.json).") var clips: String
    @Option(help: ArgumentHelp("Settings to start from, before --mode and the editor settings: "
            + "\(EditorPreset.names) (EditorPreset.swift; reference: FateZero's configuration, 50 + 50 steps at "
            + "guidance 7.5)."))
    var preset = EditorPreset.default.rawValue
    @Option(help: ArgumentHelp("Editing method: ocd, baseline, blended, tokenflow, reatco (layout clips). Default: "
            + "the preset's (ocd; baseline in reference)."))
    var mode: String?
    @Option(help: "Frames per editor window (the element's window-size, \(windowSizeRange)).")
    var windowSize = WindowSizeSetting.defaultValue
    @Option(help: "Evaluate only the first N clips.") var limit: Int?
    @Flag(help: "Target prompt := source prompt (a reconstruction check; see psnr).") var nullEdit = false
    @Flag(help: "No diffusion: VAE encode + decode each frame at the processing size; only psnr is measured.")
    var vaeRoundtrip = false
    @Option(help: "Write per clip strip.png (input | mask | output) and output/NNNN.ppm into this folder.")
    var save: String?
    @Argument(parsing: .allUnrecognized, help: "Editor settings as --name value (listed below).")
    var settings: [String] = []

    func run() throws {
        try reportingErrors {
            guard let start = EditorPreset(rawValue: preset) else {
                throw EvalError("unknown --preset '\(preset)'; valid: \(EditorPreset.names)")
            }
            var s = start.settings
            if let mode {
                guard let editMode = EditMode(rawValue: mode) else {
                    throw EvalError("unknown --mode '\(mode)'; valid: "
                                    + EditMode.allCases.map(\.rawValue).joined(separator: ", "))
                }
                s.mode = editMode
            }
            let given = try SettingArguments.apply(settings, to: &s, allowed: Self.settingNames)
            s.modelPath = model
            var config = EvalConfiguration(settings: s)
            config.windowSize = windowSize
            config.nullEdit = nullEdit
            config.vaeRoundTrip = vaeRoundtrip
            config.saveFolder = save.map { URL(fileURLWithPath: $0) }
            if let limit, limit < 1 { throw EvalError("--limit \(limit) must be at least 1") }
            var folders = try EvalClip.folders(at: clips)
            if let limit { folders = Array(folders.prefix(limit)) }
            try EvalRunner.validate(config)   // before the model loads: a bad setting should not cost a load

            let pipeline = try StableDiffusionPipeline(folder: URL(fileURLWithPath: model))
            warn(pipeline.warnings)
            if !given.contains("processing-size") {
                let native = pipeline.nativeSize
                guard native % 64 == 0 else {
                    throw EvalError("the model's native size \(native) px is not a multiple of 64; "
                                    + "give --processing-size")
                }
                config.settings.processingSize = native
            }
            let runner = try EvalRunner(pipeline: pipeline, configuration: config)
            let p = config.settings
            print("eval: \(folders.count) clip(s), preset \(preset), mode \(config.modeName), window \(windowSize), "
                  + "processing \(p.processingSize) px, \(p.steps) steps, strength \(p.strength), "
                  + "guidance \(p.guidanceScale), seed \(p.seed)" + (nullEdit ? ", null edit" : ""))
            print(Self.row("clip", "frames", "edit-acc", "warp-err", "bnd-warp", "psnr-dB", "region-acc", "out-psnr",
                           "seconds"))
            func f(_ v: Double?, _ format: String) -> String { v.map { String(format: format, $0) } ?? "-" }
            func line(_ name: String, _ t: EvalTally) -> String {
                Self.row(name, "\(t.frames)", f(t.editAccuracy, "%.3f"), f(t.warpError, "%.3f"),
                         f(t.boundaryWarpError, "%.3f"), f(t.psnr, "%.2f"), f(t.regionAccuracy, "%.3f"),
                         f(t.outsidePSNR, "%.2f"), String(format: "%.1f", t.seconds))
            }
            let summary = try runner.run(folders) { clip, t in
                print(line(clip.name, t))
                fflush(stdout)
            }
            print(line("all", summary.tally))
            print(summary.json)
        }
    }

    static func row(_ name: String, _ cells: String...) -> String {
        name.padding(toLength: max(name.count, 16), withPad: " ", startingAt: 0)
            + cells.map { String(repeating: " ", count: max(0, 11 - $0.count)) + $0 }.joined()
    }
}
