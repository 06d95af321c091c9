import Foundation

/// Where one tensor lies in a safetensors file.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Byte range relative to the start of the file (not of the data buffer).
    public var range: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// The parsed, range-checked header of a safetensors file.
public struct SafetensorsHeader: Sendable {
    public var metadata: [String: String]
    public var tensors: [String: TensorInfo]
    /// Offset of the data buffer from the start of the file.
    public var dataOffset: Int

    /// Parses and checks the header of a whole file held in `bytes`.
    public init(parsing bytes: UnsafeRawBufferPointer) throws(KVSnapError) {
        guard bytes.count >= 8 else { throw .truncated("\(bytes.count) bytes, fewer than the 8-byte header length") }
        let n = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(bytes.count - 8) else { throw .headerTooLong(length: n, fileSize: bytes.count) }
        guard n <= UInt64(KVSnapLimits.headerBytes) else { throw .overLimit(what: "header of \(n) bytes", limit: KVSnapLimits.headerBytes) }
        let headerEnd = 8 + Int(n)
        let json = Data(bytes[8..<headerEnd])
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: json) } catch {
            // Foundation's description says only "not in the correct format"; its debug text says
            // what and where ("Unexpected character 'x' around line 1, column 9").
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
            throw .badJSON(detail.map { "\($0) (in the \(n)-byte header)" } ?? "\(error.localizedDescription)")
        }
        guard let root = object as? [String: Any] else { throw .badJSON("the top level is not an object") }
        dataOffset = headerEnd
        let bufferSize = bytes.count - headerEnd
        metadata = [:]
        tensors = [:]
        let tensorCount = root.count - (root["__metadata__"] == nil ? 0 : 1)
        guard tensorCount <= KVSnapLimits.tensors else {
            throw .overLimit(what: "header with \(tensorCount) tensors", limit: KVSnapLimits.tensors)
        }
        for (name, entry) in root {
            if name == "__metadata__" {
                guard let dict = entry as? [String: Any] else { throw .badJSON("__metadata__ is not an object") }
                guard dict.count <= KVSnapLimits.metadataEntries else {
                    throw .overLimit(what: "__metadata__ with \(dict.count) entries", limit: KVSnapLimits.metadataEntries)
                }
                for (k, v) in dict {
                    guard let s = v as? String else { throw .badMetadata(key: k, problem: "value is not a string") }
                    guard s.utf8.count <= KVSnapLimits.metadataValueBytes else {
                        throw .overLimit(what: "metadata \(k.prefix(64)) of \(s.utf8.count) bytes", limit: KVSnapLimits.metadataValueBytes)
                    }
                    metadata[k] = s
                }
                continue
            }
            guard let t = entry as? [String: Any] else { throw .badTensor(name: name, problem: "entry is not an object") }
            guard let d = t["dtype"] as? String, let dtype = DType(rawValue: d) else {
                throw .badTensor(name: name, problem: "dtype \(String(describing: t["dtype"] ?? "nil")) is not one of F16, BF16, F32, I32")
            }
            guard let shapeAny = t["shape"] as? [Any], let shape = Self.integers(shapeAny), shape.allSatisfy({ $0 >= 0 }) else {
                throw .badTensor(name: name, problem: "shape is not an array of non-negative integers")
            }
            guard let offAny = t["data_offsets"] as? [Any], let off = Self.integers(offAny), off.count == 2 else {
                throw .badTensor(name: name, problem: "data_offsets is not [begin, end]")
            }
            guard off[0] >= 0, off[0] <= off[1], off[1] <= bufferSize else {
                throw .badTensor(name: name, problem: "data_offsets [\(off[0]), \(off[1])] lie outside the \(bufferSize)-byte data buffer")
            }
            var count = 1
            for s in shape {
                let (p, o) = count.multipliedReportingOverflow(by: s)
                guard !o else { throw .badTensor(name: name, problem: "shape \(shape) overflows") }
                count = p
            }
            let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, bytes == off[1] - off[0] else {
                throw .badTensor(name: name, problem: "shape \(shape) of \(d) needs \(overflow ? "more than Int.max" : String(bytes)) bytes but data_offsets span \(off[1] - off[0])")
            }
            tensors[name] = TensorInfo(name: name, dtype: dtype, shape: shape,
                                       range: (headerEnd + off[0])..<(headerEnd + off[1]))
        }
        let sorted = tensors.values.filter { !$0.range.isEmpty }.sorted { $0.range.lowerBound < $1.range.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.range.upperBound > b.range.lowerBound {
            throw .overlappingData(a.name, b.name)
        }
    }

    private static func integers(_ values: [Any]) -> [Int]? {
        var out: [Int] = []
        for v in values {
            guard let n = v as? Int else { return nil }
            out.append(n)
        }
        return out
    }
}

/// Builds the header of a safetensors file whose tensors are then written in the given order.
public struct SafetensorsLayout: Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public init(_ name: String, _ dtype: DType, _ shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
        public var byteCount: Int { shape.reduce(1, *) * dtype.size }
    }

    public let entries: [Entry]
    /// The 8-byte length, the JSON and its padding: everything before the data buffer.
    public let header: [UInt8]

    public init(entries: [Entry], metadata: [String: String]) {
        self.entries = entries
        var json = "{"
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(Self.quote($0)):\(Self.quote(metadata[$0]!))" }.joined(separator: ",")
            json += "},"
        }
        var offset = 0
        var parts: [String] = []
        for e in entries {
            let end = offset + e.byteCount
            parts.append("\(Self.quote(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(e.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(end)]}")
            offset = end
        }
        json += parts.joined(separator: ",") + "}"
        var body = Array(json.utf8)
        while (8 + body.count) % 8 != 0 { body.append(0x20) }  // align the data buffer to 8 bytes
        var h = [UInt8](repeating: 0, count: 8)
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { h.replaceSubrange(0..<8, with: $0) }
        header = h + body
    }

    /// Total file size.
    public var fileSize: Int { header.count + entries.reduce(0) { $0 + $1.byteCount } }

    /// A string map as JSON with sorted keys and no spaces.
    public static func canonicalJSON(_ map: [String: String]) -> String {
        "{" + map.keys.sorted().map { "\(quote($0)):\(quote(map[$0]!))" }.joined(separator: ",") + "}"
    }

    /// JSON string literal for `s`.
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
