import ArgumentParser
import EvalKit
import Foundation
import WindowEditor

/// `ocdedit edit INPUT -o OUTPUT --prompt …`: the element over a file, without writing a pipeline. Builds
/// input (decodebin or PNG frames) ! ocdedit ! encoder/muxer or PNG frames, with the mask on the element's mask pad,
/// shows the element's progress and moves the output to its name only when the pipeline ends well.
struct EditCommand: ParsableCommand {
    /// Element properties settable as --name value or --set name=value (the prompts and the model have their own
    /// options).
    static let propertyNames = [WindowSizeSetting.name] + EditorSettings.fields.map(\.name)
        .filter { !["model", "prompt", "source-prompt"].contains($0) }

    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Edit a video file or PNG frames with the ocdedit element, with a progress bar.",
        discussion: """
        INPUT: a video file (anything the installed GStreamer plugins decode: WebM, Matroska, MP4/H.264 with \
        gstreamer1.0-libav, …), a folder of numbered PNG frames (0001.png, frame-0001.png, …) or a pattern \
        (frames/%04d.png). --mask takes the same kinds, in any colour format (converted to GRAY8: 0 = keep, \
        255 = edit); PNG sequences play at --fps. A video file's audio, when the installed plugins decode it, is \
        re-encoded into the output (Opus in WebM and Matroska, MP3 in MP4) unless --no-audio; PNG output has none.
        OUTPUT: name.webm (VP8), name.mkv (VP8 in Matroska), name.mp4 (H.264 4:2:0, x264enc from \
        gstreamer1.0-plugins-ugly) or a PNG pattern (out/frame-%05d.png). The output is written under a hidden \
        temporary name in its folder and renamed when the pipeline has ended well; on an error or Ctrl-C it is \
        deleted and nothing is left under the final name.
        Progress: on a terminal, one line with a bar, frames and windows done, seconds per window, ETA and elapsed \
        time; otherwise one line per window (the element's `progress` bus messages).
        Without --model, Models/shapes-sd of this repository (a model trained on generated shapes: see README). \
        Without --processing-size, the model's native size (UNet sample_size x VAE downscale).

        Element properties, as --name value or --name=value after INPUT, or --set name=value anywhere:
        \(SettingArguments.help(propertyNames.filter { $0 != WindowSizeSetting.name }))
          --window-size <\(windowSizeRange)>
                \(WindowSizeSetting.blurb) (default \(WindowSizeSetting.defaultValue))
        """)

    @Argument(help: "Video file, folder of numbered PNG frames, or PNG pattern (frames/%04d.png).")
    var input: String
    @Option(name: [.short, .long], help: "Output: .webm, .mkv, .mp4 or a PNG pattern (out/frame-%05d.png).")
    var output: String
    @Option(help: "Target prompt of the edit.") var prompt: String
    @Option(help: "Prompt describing the input (used for DDIM inversion).") var sourcePrompt: String?
    @Option(help: "Mask video or PNG frames (any colour; 0 = keep, 255 = edit). Default: the whole frame.")
    var mask: String?
    @Option(help: "Diffusers-layout SD 1.x/2.x model folder (default: the repository's Models/shapes-sd).")
    var model: String?
    @Option(help: "Frame rate of PNG sequences (input and mask), N or N/D.") var fps = "25/1"
    @Flag(help: "Leave the input's audio out of the output.") var noAudio = false
    @Option(name: .customLong("set"), help: "An element property as name=value (repeatable).")
    var sets: [String] = []
    @Argument(parsing: .allUnrecognized, help: "Element properties as --name value (listed below).")
    var properties: [String] = []

    func run() throws {
        try reportingErrors {
            let (settings, windowSize, given) = try Self.parseProperties(properties, sets: sets)
            guard let rate = Self.parseRate(fps) else { throw EditError("--fps \(fps): expected N or N/D") }
            let source = try EditSource.at(input, what: "input")
            let maskSource = try mask.map { try EditSource.at($0, what: "mask") }
            let sink = try EditSink.forOutput(output)
            guard let modelFolder = model ?? defaultModelFolder() else {
                throw EditError("no --model given and no Models/shapes-sd found beside this build")
            }
            var values: [(String, String)] = [("model", modelFolder), ("prompt", prompt)]
            if let sourcePrompt { values.append(("source-prompt", sourcePrompt)) }
            if !given.contains("processing-size"), let native = nativeProcessingSize(modelFolder: modelFolder) {
                values.append(("processing-size", "\(native)"))
            }
            for name in Self.propertyNames where given.contains(name) {
                values.append((name, name == WindowSizeSetting.name ? "\(windowSize)"
                                   : EditorSettings.field(named: name)!.value(in: settings)))
            }
            var checked = settings
            checked.modelPath = modelFolder
            checked.prompt = prompt
            try EditorSession.validate(checked)

            try EditRunner.initGStreamer()
            var needed = sink.requiredElements + [("videoconvert", "gstreamer1.0-plugins-base")]
            for s in [source] + (maskSource.map { [$0] } ?? []) {
                if case .png = s { needed += [("multifilesrc", "gstreamer1.0-plugins-good"),
                                              ("pngdec", "gstreamer1.0-plugins-good")] }
            }
            let audioBranch = Self.audioBranch(source: source, sink: sink, wanted: !noAudio)
            if audioBranch != nil {
                needed += [sink.audioEncoder!, ("audioconvert", "gstreamer1.0-plugins-base"),
                           ("audioresample", "gstreamer1.0-plugins-base")]
            }
            try EditRunner.require(needed)

            let staged = try StagedOutput(output: output, sink: sink)
            var description = source.description(name: "in", format: "RGB", fps: rate)
                + " ! ocdedit name=e ! " + sink.description(name: "out", startIndex: Self.startIndex(source))
            var locations = [("in", "location", source.location), ("out", "location", staged.sinkLocation)]
            if let audioBranch { description += " " + audioBranch }
            if let maskSource {
                description += " " + maskSource.description(name: "maskin", format: "GRAY8", fps: rate) + " ! e.mask"
                locations.append(("maskin", "location", maskSource.location))
            }
            let display = EditProgressDisplay(terminal: isatty(STDERR_FILENO) != 0, windowSize: windowSize,
                                              knownFrames: source.knownFrames)
            let started = Date()
            do {
                try EditRunner.run(description, properties: locations + values.map { ("e", $0.0, $0.1) },
                                   display: display, onInterrupt: staged.discard)
            } catch {
                staged.discard()
                throw error
            }
            let moved: Int
            do { moved = try staged.commit() } catch {
                staged.discard()
                throw error
            }
            let frames = display.framesDone > 0 ? Int(display.framesDone) : moved
            print("ocdedit: wrote \(output) (\(frames) frames, \(display.windowsDone) windows, "
                  + String(format: "%.1f s)", Date().timeIntervalSince(started)))
        }
    }

    /// The pipeline fragment that carries the input's audio into the output, or nil (said on stderr when the
    /// input has audio that is left out).
    static func audioBranch(source: EditSource, sink: EditSink, wanted: Bool) -> String? {
        guard wanted, case let .file(path) = source else { return nil }
        switch MediaProbe.audio(in: path) {
        case .none:
            return nil
        case let .unusable(why):
            warn(["the input's audio is not copied: \(why)"])
            return nil
        case let .decodable(codec):
            guard let branch = sink.audioBranch(decoder: "in-dec") else {
                warn(["PNG frames carry no audio: the input's \(codec) is not written"])
                return nil
            }
            return branch
        }
    }

    /// PNG output is numbered from the input's first frame number (0 for video input).
    static func startIndex(_ source: EditSource) -> Int {
        if case let .png(s) = source { return s.first }
        return 0
    }

    /// "25", "25/1", "30000/1001" → a GStreamer fraction text; nil if malformed.
    static func parseRate(_ text: String) -> String? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map { Int($0) }
        guard (1...2).contains(parts.count), parts.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        return "\(parts[0]!)/\(parts.count == 2 ? parts[1]! : 1)"
    }

    /// Element properties from `--name value` tokens and `--set name=value` options, checked against the
    /// property table (EditorSettings.fields and WindowSizeSetting): the settings, the window size and the names
    /// given.
    static func parseProperties(_ tokens: [String], sets: [String]) throws
        -> (settings: EditorSettings, windowSize: Int, given: Set<String>) {
        var all = tokens
        for s in sets {
            guard let eq = s.firstIndex(of: "="), eq != s.startIndex else {
                throw EditError("--set \(s): expected name=value")
            }
            all.append("--" + s)
        }
        // window-size is the element's, not the editor's: taken out here, the rest goes through the table.
        var rest: [String] = []
        var windowText: String?
        var i = 0
        while i < all.count {
            let token = all[i]
            i += 1
            if token == "--" + WindowSizeSetting.name {
                guard i < all.count else { throw EditError("--window-size needs a value (\(windowSizeRange))") }
                windowText = all[i]
                i += 1
            } else if token.hasPrefix("--\(WindowSizeSetting.name)=") {
                windowText = String(token.dropFirst(WindowSizeSetting.name.count + 3))
            } else {
                rest.append(token)
            }
        }
        var windowSize = WindowSizeSetting.defaultValue
        if let windowText {
            guard let v = Int(windowText), WindowSizeSetting.range.contains(v) else {
                throw EditError("window-size: '\(windowText)' is not an integer in \(windowSizeRange)")
            }
            windowSize = v
        }
        var settings = EditorSettings()
        var given = try SettingArguments.apply(rest, to: &settings,
                                               allowed: propertyNames.filter { $0 != WindowSizeSetting.name })
        if windowText != nil { given.insert(WindowSizeSetting.name) }
        return (settings, windowSize, given)
    }
}
