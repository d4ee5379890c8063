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
        let utf8 = Data(text.utf8)
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
        for (k, v) in object where k.lowercased() == lower { return v }
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
