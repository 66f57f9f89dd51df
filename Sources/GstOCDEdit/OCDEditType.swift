// GType registration of GstOCDEdit (a GstAggregator subclass) and the C trampolines of its virtual methods.
// The instance struct is GstAggregator followed by one pointer to the Swift `OCDEdit` object.
import CGStreamer
import CGstShim

enum OCDEditType {
    nonisolated(unsafe) static var parentClass: UnsafeMutablePointer<GstAggregatorClass>!
    nonisolated(unsafe) static var parentObjectClass: UnsafeMutablePointer<GObjectClass>!

    static let implOffset = (MemoryLayout<GstAggregator>.size + 7) & ~7

    static let type: GType = {
        var info = GTypeInfo()
        info.class_size = guint16(MemoryLayout<GstAggregatorClass>.size)
        info.class_init = { klass, _ in OCDEditType.classInit(klass!) }
        info.instance_size = guint16(implOffset + MemoryLayout<UnsafeMutableRawPointer>.size)
        info.instance_init = { instance, _ in OCDEditType.instanceInit(instance!) }
        return g_type_register_static(ocd_aggregator_type(), "GstOCDEdit", &info, GTypeFlags(rawValue: 0))
    }()

    static func impl(_ pointer: UnsafeMutableRawPointer) -> OCDEdit {
        let slot = (pointer + implOffset).assumingMemoryBound(to: UnsafeMutableRawPointer.self)
        return Unmanaged<OCDEdit>.fromOpaque(slot.pointee).takeUnretainedValue()
    }
    static func impl(_ agg: UnsafeMutablePointer<GstAggregator>?) -> OCDEdit { impl(UnsafeMutableRawPointer(agg!)) }

    private static let anySize = "width=(int)[ 1, 16384 ], height=(int)[ 1, 16384 ], "
        + "framerate=(fraction)[ 0/1, 2147483647/1 ]"
    static let sinkCaps = "video/x-raw, format=(string){ RGB, RGBA, BGRx, I420 }, " + anySize
    static let maskCaps = "video/x-raw, format=(string)GRAY8, " + anySize

    private static func addTemplate(_ elementClass: UnsafeMutablePointer<GstElementClass>, _ name: String,
                                    _ direction: GstPadDirection, _ caps: String) {
        let c = gst_caps_from_string(caps)
        let templ = gst_pad_template_new_with_gtype(name, direction, GST_PAD_ALWAYS, c, ocd_aggregator_pad_type())
        gst_caps_unref(c)
        gst_element_class_add_pad_template(elementClass, templ)
    }

    private static func classInit(_ klass: gpointer) {
        parentClass = g_type_class_peek_parent(klass)!.assumingMemoryBound(to: GstAggregatorClass.self)
        parentObjectClass = UnsafeMutableRawPointer(parentClass).assumingMemoryBound(to: GObjectClass.self)
        let objectClass = klass.assumingMemoryBound(to: GObjectClass.self)
        let elementClass = klass.assumingMemoryBound(to: GstElementClass.self)
        let aggClass = klass.assumingMemoryBound(to: GstAggregatorClass.self)

        objectClass.pointee.set_property = { obj, id, value, _ in
            OCDEditType.impl(UnsafeMutableRawPointer(obj!)).setProperty(Int(id), value!)
        }
        objectClass.pointee.get_property = { obj, id, value, _ in
            OCDEditType.impl(UnsafeMutableRawPointer(obj!)).getProperty(Int(id), value!)
        }
        objectClass.pointee.finalize = { obj in
            let slot = (UnsafeMutableRawPointer(obj!) + OCDEditType.implOffset)
                .assumingMemoryBound(to: UnsafeMutableRawPointer.self)
            Unmanaged<OCDEdit>.fromOpaque(slot.pointee).release()
            OCDEditType.parentObjectClass.pointee.finalize(obj)
        }
        for (i, p) in propertyTable.enumerated() {
            g_object_class_install_property(objectClass, guint(i + 1), p.makeSpec())
        }

        gst_element_class_set_static_metadata(
            elementClass,
            staticCString("Object-centric diffusion video editor"),
            staticCString("Filter/Effect/Video"),
            staticCString("Edits windows of video frames with Stable Diffusion 1.x, guided by a foreground mask on the "
                          + "'mask' pad (object-centric sampling and token merging)"),
            staticCString("ocdedit developers"))
        addTemplate(elementClass, "sink", GST_PAD_SINK, sinkCaps)
        addTemplate(elementClass, "mask", GST_PAD_SINK, maskCaps)
        addTemplate(elementClass, "src", GST_PAD_SRC, sinkCaps)

        aggClass.pointee.aggregate = { agg, timeout in OCDEditType.impl(agg).aggregate(timeout: timeout != 0) }
        aggClass.pointee.start = { agg in OCDEditType.impl(agg).start() ? 1 : 0 }
        aggClass.pointee.stop = { agg in OCDEditType.impl(agg).stop() ? 1 : 0 }
        aggClass.pointee.flush = { agg in OCDEditType.impl(agg).flush() }
        aggClass.pointee.sink_event = { agg, pad, event in OCDEditType.impl(agg).sinkEvent(pad!, event!) ? 1 : 0 }
        aggClass.pointee.sink_event_pre_queue = { agg, pad, event in
            OCDEditType.impl(agg).sinkEventPreQueue(pad!, event!)
        }
        aggClass.pointee.sink_query = { agg, pad, query in OCDEditType.impl(agg).sinkQuery(pad!, query!) ? 1 : 0 }
        aggClass.pointee.src_query = { agg, query in OCDEditType.impl(agg).srcQuery(query!) ? 1 : 0 }
        aggClass.pointee.update_src_caps = { agg, caps, ret in OCDEditType.impl(agg).updateSrcCaps(caps, ret!) }
    }

    private static func instanceInit(_ instance: UnsafeMutablePointer<GTypeInstance>) {
        let raw = UnsafeMutableRawPointer(instance)
        let element = raw.assumingMemoryBound(to: GstElement.self)
        let elementClass = UnsafeMutableRawPointer(instance.pointee.g_class!)
            .assumingMemoryBound(to: GstElementClass.self)
        let sink = gst_pad_new_from_template(gst_element_class_get_pad_template(elementClass, "sink"), "sink")!
        let mask = gst_pad_new_from_template(gst_element_class_get_pad_template(elementClass, "mask"), "mask")!
        gst_element_add_pad(element, sink)
        gst_element_add_pad(element, mask)
        let agg = raw.assumingMemoryBound(to: GstAggregator.self)
        let impl = OCDEdit(aggregator: agg,
                           videoPad: UnsafeMutableRawPointer(sink).assumingMemoryBound(to: GstAggregatorPad.self),
                           maskPad: UnsafeMutableRawPointer(mask).assumingMemoryBound(to: GstAggregatorPad.self))
        (raw + implOffset).assumingMemoryBound(to: UnsafeMutableRawPointer.self).pointee =
            Unmanaged.passRetained(impl).toOpaque()
    }
}
