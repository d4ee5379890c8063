import Foundation

/// Decoding of configuration text the way the original factory tolerated it, with
/// error positions a user can jump to.
public enum JSONText {
    /// Decodes bytes to a string: UTF-8 with or without BOM, or UTF-16 (LE/BE) with BOM,
    /// which is what Windows PowerShell's `Out-File` writes by default.
    public static func decodeText(_ data: Data) -> String? {
        let bytes = [UInt8](data.prefix(3))
        if bytes.count >= 2, bytes[0] == 0xFF, bytes[1] == 0xFE {
            return String(data: data.dropFirst(2), encoding: .utf16LittleEndian)
        }
        if bytes.count >= 2, bytes[0] == 0xFE, bytes[1] == 0xFF {
            return String(data: data.dropFirst(2), encoding: .utf16BigEndian)
        }
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            return String(data: data.dropFirst(3), encoding: .utf8)
        }
        return String(data: data, encoding: .utf8)
    }

    /// A parse failure with its 1-based line and column.
    public struct ParseError: Error, Sendable {
        public var message: String
        public var line: Int
        public var column: Int
    }

    /// Parses JSON text into Foundation objects; failures carry line and column.
    public static func parse(_ text: String) throws(ParseError) -> Any {
        // Most configuration files are plain JSON: read those directly (JSONSerialization is the
        // slowest part of validating thousands of templates), and let JSONSerialization take
        // everything else, including every error, so results and messages are unchanged.
        if let fast = text.utf8.withContiguousStorageIfAvailable({ FastJSONReader.parse($0) }), let value = fast {
            return value
        }
        var utf8 = Data(text.utf8)
        // ARM accepts `//` and `/* */` comments in templates: blank them out (same byte length, so
        // error positions stay right) and read again.
        if let stripped = strippingComments(utf8) {
            utf8 = stripped
            if let fast = utf8.withUnsafeBytes({ FastJSONReader.parse($0.bindMemory(to: UInt8.self)) }) { return fast }
        }
        do {
            return try JSONSerialization.jsonObject(with: utf8, options: [.fragmentsAllowed])
        } catch {
            let description = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            let offset = characterOffset(in: description) ?? utf8.count
            let (line, column) = lineAndColumn(ofByteOffset: offset, in: utf8)
            var message = description
            if let range = message.range(of: " around character") {
                message = String(message[..<range.lowerBound])
            }
            if message.hasSuffix(".") { message.removeLast() }
            throw ParseError(message: message, line: line, column: column)
        }
    }

    /// The bytes with every comment outside strings replaced by spaces (newlines kept), or nil when there is none.
    static func strippingComments(_ data: Data) -> Data? {
        var bytes = [UInt8](data)
        var changed = false
        var i = 0
        var inString = false
        let slash = UInt8(ascii: "/"), star = UInt8(ascii: "*"), quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        let newline = UInt8(ascii: "\n"), space = UInt8(ascii: " ")
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                if b == backslash { i += 2; continue }
                if b == quote { inString = false }
                i += 1
                continue
            }
            if b == quote { inString = true; i += 1; continue }
            if b == slash, i + 1 < bytes.count, bytes[i + 1] == slash {
                changed = true
                while i < bytes.count, bytes[i] != newline { bytes[i] = space; i += 1 }
                continue
            }
            if b == slash, i + 1 < bytes.count, bytes[i + 1] == star {
                changed = true
                bytes[i] = space
                bytes[i + 1] = space
                i += 2
                while i < bytes.count {
                    if bytes[i] == star, i + 1 < bytes.count, bytes[i + 1] == slash {
                        bytes[i] = space
                        bytes[i + 1] = space
                        i += 2
                        break
                    }
                    if bytes[i] != newline { bytes[i] = space }
                    i += 1
                }
                continue
            }
            i += 1
        }
        return changed ? Data(bytes) : nil
    }

    private static func characterOffset(in description: String) -> Int? {
        guard let range = description.range(of: "character ") else { return nil }
        let digits = description[range.upperBound...].prefix { $0.isNumber }
        return Int(digits)
    }

    /// 1-based line and column of a byte offset.
    public static func lineAndColumn(ofByteOffset offset: Int, in data: Data) -> (Int, Int) {
        var line = 1
        var column = 1
        var index = 0
        for byte in data {
            if index >= offset { break }
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1
            }
            index += 1
        }
        return (line, column)
    }

    /// Finds the 1-based line of the first occurrence of `needle` at or after `start`
    /// (a UTF-8 offset), returning the line and the offset just after the match.
    /// Used to point diagnostics at the entry they are about.
    public static func locate(_ needle: String, in text: LineIndex, from start: Int = 0) -> (line: Int, end: Int)? {
        text.locate(needle, from: start)
    }

    /// Case-insensitive dictionary lookup, because the original accepted property names in any case.
    public static func value(_ object: [String: Any], _ key: String) -> Any? {
        if let exact = object[key] { return exact }
        let lower = key.lowercased()
        let asciiKey = lower.utf8.allSatisfy { $0 < 0x80 }
        for (k, v) in object {
            if asciiKey && k.utf8.allSatisfy({ $0 < 0x80 }) {
                // Both ASCII: compare lowercased bytes without building a lowercased copy of every key.
                if k.utf8.count == lower.utf8.count && zip(k.utf8, lower.utf8).allSatisfy({ a, b in
                    (a >= UInt8(ascii: "A") && a <= UInt8(ascii: "Z") ? a | 0x20 : a) == b
                }) { return v }
            } else if k.lowercased() == lower {
                return v
            }
        }
        return nil
    }
}

/// Line lookup over a text's UTF-8 bytes: built once per file, then each search is cheap.
public struct LineIndex: Sendable {
    private let bytes: [UInt8]
    private let lineStarts: [Int]

    public init(_ text: String) {
        bytes = Array(text.utf8)
        var starts = [0]
        for (i, b) in bytes.enumerated() where b == UInt8(ascii: "\n") { starts.append(i + 1) }
        lineStarts = starts
    }

    public func line(ofOffset offset: Int) -> Int {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if lineStarts[mid] <= offset { low = mid } else { high = mid - 1 }
        }
        return low + 1
    }

    public func locate(_ needle: String, from start: Int = 0) -> (line: Int, end: Int)? {
        let n = Array(needle.utf8)
        guard !n.isEmpty, bytes.count >= n.count, start <= bytes.count - n.count else { return nil }
        var i = max(0, start)
        let last = bytes.count - n.count
        while i <= last {
            if bytes[i] == n[0] {
                var j = 1
                while j < n.count && bytes[i + j] == n[j] { j += 1 }
                if j == n.count { return (line(ofOffset: i), i + n.count) }
            }
            i += 1
        }
        return nil
    }
}

/// A strict JSON reader giving the same objects as `JSONSerialization` (`[String: Any]`, `[Any]`,
/// `String`, `NSNumber`, `NSNull`) for standard JSON. It returns nil for anything it is not sure
/// JSONSerialization reads the same way (any syntax error, a duplicate key, a lone surrogate,
/// deep nesting), and the caller then falls back to JSONSerialization. Numbers are handed to
/// JSONSerialization one by one, so their NSNumber types are exactly its own.
struct FastJSONReader {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var i = 0
    private var depth = 0
    /// Members of the objects being read, innermost last: each dictionary is then made at its final size.
    private var members: [(key: String, value: Any)] = []
    private static let maxDepth = 100

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Any? {
        var reader = FastJSONReader(bytes)
        guard let value = reader.value() else { return nil }
        reader.skipWhitespace()
        return reader.i == bytes.count ? value : nil
    }

    private mutating func skipWhitespace() {
        while i < bytes.count {
            switch bytes[i] {
            case 0x20, 0x09, 0x0A, 0x0D: i += 1
            default: return
            }
        }
    }

    private mutating func value() -> Any? {
        skipWhitespace()
        guard i < bytes.count else { return nil }
        switch bytes[i] {
        case UInt8(ascii: "{"): return object()
        case UInt8(ascii: "["): return array()
        case UInt8(ascii: "\""): return string()
        case UInt8(ascii: "t"): return literal("true", NSNumber(value: true))
        case UInt8(ascii: "f"): return literal("false", NSNumber(value: false))
        case UInt8(ascii: "n"): return literal("null", NSNull())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
        default: return nil
        }
    }

    private mutating func literal(_ word: StaticString, _ result: Any) -> Any? {
        let count = word.utf8CodeUnitCount
        guard bytes.count - i >= count else { return nil }
        for k in 0..<count where bytes[i + k] != word.utf8Start[k] { return nil }
        i += count
        return result
    }

    private mutating func number() -> Any? {
        let start = i
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
                 UInt8(ascii: "e"), UInt8(ascii: "E"):
                i += 1
            default:
                return Self.number(Data(bytes[start..<i]))
            }
        }
        return Self.number(Data(bytes[start..<i]))
    }

    private static func number(_ token: Data) -> Any? {
        guard let value = try? JSONSerialization.jsonObject(with: token, options: [.fragmentsAllowed]),
              value is NSNumber else { return nil }
        return value
    }

    private mutating func object() -> Any? {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { return nil }
        i += 1  // {
        skipWhitespace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "}") {
            i += 1
            return [String: Any]()
        }
        let base = members.count
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\""), let key = string() else { return nil }
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            guard let member = value() else { return nil }
            members.append((key, member))
            skipWhitespace()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "}"):
                i += 1
                var result = [String: Any](minimumCapacity: members.count - base)
                for member in members[base...] {
                    guard result.updateValue(member.value, forKey: member.key) == nil else { return nil }  // duplicate: JSONSerialization decides
                }
                members.removeSubrange(base...)
                return result
            default: return nil
            }
        }
    }

    private mutating func array() -> Any? {
        depth += 1
        defer { depth -= 1 }
        guard depth <= Self.maxDepth else { return nil }
        i += 1  // [
        var result: [Any] = []
        skipWhitespace()
        if i < bytes.count && bytes[i] == UInt8(ascii: "]") {
            i += 1
            return result
        }
        while true {
            guard let element = value() else { return nil }
            result.append(element)
            skipWhitespace()
            guard i < bytes.count else { return nil }
            switch bytes[i] {
            case UInt8(ascii: ","): i += 1
            case UInt8(ascii: "]"):
                i += 1
                return result
            default: return nil
            }
        }
    }

    /// A string starting at the opening quote; the text is valid UTF-8 (it came from a String).
    private mutating func string() -> String? {
        i += 1  // "
        let start = i
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
                i += 1
                return text
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { return nil }  // control characters must be escaped
            i += 1
        }
        guard i < bytes.count else { return nil }
        // Has escapes: decode into a buffer.
        var buffer = Array(UnsafeBufferPointer(rebasing: bytes[start..<i]))
        while i < bytes.count {
            let byte = bytes[i]
            switch byte {
            case UInt8(ascii: "\""):
                i += 1
                return String(decoding: buffer, as: UTF8.self)
            case UInt8(ascii: "\\"):
                i += 1
                guard i < bytes.count else { return nil }
                let escape = bytes[i]
                i += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): buffer.append(escape)
                case UInt8(ascii: "b"): buffer.append(0x08)
                case UInt8(ascii: "f"): buffer.append(0x0C)
                case UInt8(ascii: "n"): buffer.append(0x0A)
                case UInt8(ascii: "r"): buffer.append(0x0D)
                case UInt8(ascii: "t"): buffer.append(0x09)
                case UInt8(ascii: "u"):
                    guard let unit = hex4() else { return nil }
                    var scalarValue = UInt32(unit)
                    if (0xD800...0xDBFF).contains(unit) {
                        // A high surrogate must be followed by an escaped low one.
                        guard bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else { return nil }
                        i += 2
                        guard let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                        scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(unit) {
                        return nil
                    }
                    guard let scalar = Unicode.Scalar(scalarValue) else { return nil }
                    buffer.append(contentsOf: UTF8.encode(scalar)!)
                default:
                    return nil
                }
            default:
                if byte < 0x20 { return nil }
                buffer.append(byte)
                i += 1
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt16? {
        guard bytes.count - i >= 4 else { return nil }
        var value: UInt16 = 0
        for _ in 0..<4 {
            let byte = bytes[i]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            value = value << 4 | UInt16(digit)
            i += 1
        }
        return value
    }
}
