// Runs `ocdedit edit`'s pipeline: GStreamer set up with the ocdedit plugin found next to this binary, the output
// written under a temporary name beside the final one and moved there only after EOS, the element's bus messages
// shown by EditProgressDisplay, and the first bus error as the command's error.
import ArgumentParser
import CGStreamer
import Foundation

/// SIGINT/SIGTERM seen (set by the signal handler, polled by the bus loop).
nonisolated(unsafe) private var interruptedBy: Int32 = 0

/// Where the pipeline writes until it succeeds: a hidden file (or, for PNG frames, a hidden folder) in the output's
/// folder, so the final rename stays on one file system. Nothing ever appears under the final name half-written.
struct StagedOutput {
    let finalPath: String
    let sink: EditSink
    /// The file, or the folder of PNG frames, the pipeline writes.
    let staging: String
    /// The sink element's `location`.
    let sinkLocation: String

    init(output: String, sink: EditSink) throws {
        finalPath = output
        self.sink = sink
        let url = URL(fileURLWithPath: output)
        let folder = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw EditError("output folder \(folder.path): \(error.localizedDescription)")
        }
        let pid = getpid()
        switch sink {
        case .png:
            staging = folder.appendingPathComponent(".ocdedit-\(pid).partial").path
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
            sinkLocation = URL(fileURLWithPath: staging).appendingPathComponent(url.lastPathComponent).path
        default:
            staging = folder.appendingPathComponent(".\(url.lastPathComponent).ocdedit-\(pid).partial").path
            sinkLocation = staging
        }
    }

    /// Moves the finished output to its final name (PNG frames one by one, each with rename(2)); returns the
    /// number of PNG frames moved (0 for a video file).
    func commit() throws -> Int {
        guard case .png = sink else {
            guard rename(staging, finalPath) == 0 else {
                throw EditError("could not rename \(staging) to \(finalPath): \(String(cString: strerror(errno)))")
            }
            return 0
        }
        let folder = URL(fileURLWithPath: finalPath).deletingLastPathComponent()
        let names = try FileManager.default.contentsOfDirectory(atPath: staging).sorted()
        for name in names {
            let from = URL(fileURLWithPath: staging).appendingPathComponent(name).path
            let to = folder.appendingPathComponent(name).path
            guard rename(from, to) == 0 else {
                throw EditError("could not rename \(from) to \(to): \(String(cString: strerror(errno)))")
            }
        }
        try? FileManager.default.removeItem(atPath: staging)
        return names.count
    }

    func discard() { try? FileManager.default.removeItem(atPath: staging) }
}

enum EditRunner {
    /// Initialises GStreamer with this build's plugin on the search path (after any GST_PLUGIN_PATH given): the
    /// libgstocdedit.so SwiftPM built beside this binary, or the repository's Plugin/lib.
    static func initGStreamer() throws {
        let exeDir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        var candidates = [exeDir]
        var dir = exeDir
        for _ in 0..<4 {
            dir = dir.deletingLastPathComponent()
            candidates.append(dir.appendingPathComponent("Plugin/lib"))
        }
        if let found = candidates.first(where: {
            FileManager.default.fileExists(atPath: $0.appendingPathComponent("libgstocdedit.so").path)
        }) {
            let given = ProcessInfo.processInfo.environment["GST_PLUGIN_PATH"] ?? ""
            setenv("GST_PLUGIN_PATH", given.isEmpty ? found.path : given + ":" + found.path, 1)
        }
        gst_init(nil, nil)
        guard let factory = gst_element_factory_find("ocdedit") else {
            throw EditError("the ocdedit GStreamer plugin was not found: run `make build`, or set GST_PLUGIN_PATH to "
                            + "the folder of libgstocdedit.so")
        }
        gst_object_unref(UnsafeMutableRawPointer(factory))
    }

    /// Throws naming the package to install when an element is missing.
    static func require(_ elements: [(element: String, package: String)]) throws {
        for (element, package) in elements {
            guard let f = gst_element_factory_find(element) else {
                throw EditError("GStreamer element \(element) is missing: install \(package)")
            }
            gst_object_unref(UnsafeMutableRawPointer(f))
        }
    }

    /// Parses `description`, sets `properties` (element name, property, value as gst-launch text), plays it to EOS
    /// and reports the element `e`'s progress. Throws the first bus error's text; exits 130 on SIGINT/SIGTERM
    /// (after `onInterrupt`).
    static func run(_ description: String, properties: [(element: String, name: String, value: String)],
                    display: EditProgressDisplay, onInterrupt: () -> Void) throws {
        var parseError: UnsafeMutablePointer<GError>?
        guard let pipeline = gst_parse_launch(description, &parseError) else {
            let text = parseError.map { String(cString: $0.pointee.message) } ?? "unknown error"
            throw EditError("could not build the pipeline: \(text)\n  \(description)")
        }
        defer {
            gst_element_set_state(pipeline, GST_STATE_NULL)
            gst_object_unref(pipeline)
        }
        if let parseError {
            // A recoverable parse error (e.g. a link that may work later): say so, then try.
            FileHandle.standardError.write(Data("warning: \(String(cString: parseError.pointee.message))\n".utf8))
            g_error_free(parseError)
        }
        let bin = UnsafeMutableRawPointer(pipeline).assumingMemoryBound(to: GstBin.self)
        guard let editor = gst_bin_get_by_name(bin, "e") else { throw EditError("pipeline has no element e") }
        defer { gst_object_unref(editor) }
        for p in properties {
            guard let element = gst_bin_get_by_name(bin, p.element) else { continue }
            let object = UnsafeMutableRawPointer(element).assumingMemoryBound(to: GObject.self)
            gst_util_set_object_arg(object, p.name, p.value)
            gst_object_unref(element)
        }

        interruptedBy = 0
        signal(SIGINT) { interruptedBy = $0 }
        signal(SIGTERM) { interruptedBy = $0 }
        defer {
            signal(SIGINT, SIG_DFL)
            signal(SIGTERM, SIG_DFL)
        }

        let bus = gst_element_get_bus(pipeline)!
        defer { gst_object_unref(bus) }
        _ = gst_element_set_state(pipeline, GST_STATE_PLAYING)
        let types = GST_MESSAGE_EOS.rawValue | GST_MESSAGE_ERROR.rawValue | GST_MESSAGE_WARNING.rawValue
            | GST_MESSAGE_PROGRESS.rawValue | GST_MESSAGE_ELEMENT.rawValue
        let editorObject = UnsafeMutableRawPointer(editor).assumingMemoryBound(to: GstObject.self)
        while true {
            if interruptedBy != 0 {
                display.finish()
                gst_element_set_state(pipeline, GST_STATE_NULL)
                onInterrupt()
                FileHandle.standardError.write(Data("ocdedit: interrupted; no output written\n".utf8))
                throw ExitCode(128 + interruptedBy)
            }
            guard let m = gst_bus_timed_pop_filtered(bus, 250_000_000, GstMessageType(types)) else {
                display.tick()
                continue
            }
            defer { gst_message_unref(m) }
            switch m.pointee.type {
            case GST_MESSAGE_EOS:
                display.finish()
                return
            case GST_MESSAGE_ERROR:
                display.finish()
                throw EditError(parse(m, error: true))
            case GST_MESSAGE_WARNING:
                display.finish()
                FileHandle.standardError.write(Data("warning: \(parse(m, error: false))\n".utf8))
            case GST_MESSAGE_PROGRESS:
                var type = GST_PROGRESS_TYPE_START
                var code: UnsafeMutablePointer<gchar>?
                var text: UnsafeMutablePointer<gchar>?
                gst_message_parse_progress(m, &type, &code, &text)
                let codeText = code.map { String(cString: $0) } ?? ""
                let message = text.map { String(cString: $0) } ?? ""
                g_free(code)
                g_free(text)
                guard codeText == "loading" else { break }
                if type == GST_PROGRESS_TYPE_START {
                    display.loadingStarted(message, stamp: UInt64(m.pointee.timestamp))
                } else {
                    display.loadingEnded(message, failed: type != GST_PROGRESS_TYPE_COMPLETE,
                                         stamp: UInt64(m.pointee.timestamp))
                }
            default:
                guard m.pointee.src == editorObject, let s = gst_message_get_structure(m),
                      gst_structure_has_name(s, "progress") != 0 else { break }
                display.window(windowProgress(s))
            }
        }
    }

    private static func parse(_ m: UnsafeMutablePointer<GstMessage>, error: Bool) -> String {
        var err: UnsafeMutablePointer<GError>?
        var debug: UnsafeMutablePointer<gchar>?
        if error { gst_message_parse_error(m, &err, &debug) } else { gst_message_parse_warning(m, &err, &debug) }
        defer { if let err { g_error_free(err) }; g_free(debug) }
        return err.map { String(cString: $0.pointee.message) } ?? "unknown error"
    }

    private static func windowProgress(_ s: UnsafePointer<GstStructure>) -> WindowProgressMessage {
        var i: gint = 0, i64: gint64 = 0, d: gdouble = 0
        var m = WindowProgressMessage(window: 0, current: 0, total: -1, seconds: 0, eta: -1)
        if gst_structure_get_int(s, "window", &i) != 0 { m.window = Int(i) }
        if gst_structure_get_int64(s, "current", &i64) != 0 { m.current = Int64(i64) }
        if gst_structure_get_int64(s, "total", &i64) != 0 { m.total = Int64(i64) }
        if gst_structure_get_double(s, "seconds", &d) != 0 { m.seconds = d }
        if gst_structure_get_double(s, "eta", &d) != 0 { m.eta = d }
        return m
    }
}
