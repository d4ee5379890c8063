import Foundation

/// What a template says about its gallery image: `metadata.imageFactory` keys and the data disks
/// its lab VM asks for.
extension TemplateParser {
    /// Reads the definition settings of `metadata.imageFactory` (`definitionName`, `publisher`,
    /// `offer`, `sku`, `hyperVGeneration`, `recommendedVCPUs`, `recommendedMemoryGB`, `endOfLife`;
    /// keys in any case). Nil when none is present. A wrong type or value is an error at its line,
    /// reported once here rather than once per gallery that takes the template.
    static func galleryImageMetadata(_ factory: [String: Any], file: String, lines: LineIndex,
                                     diagnostics: inout [Diagnostic]) -> GalleryImageMetadata? {
        var metadata = GalleryImageMetadata()
        var present = false
        // Keys are looked for after "imageFactory", so galleryImageReference's publisher, offer and sku never match.
        let start = lines.locate("\"imageFactory\"")?.end ?? 0
        func line(_ key: String) -> Int? {
            let written = factory.keys.first { $0.lowercased() == key.lowercased() } ?? key
            return (lines.locate("\"\(written)\"", from: start) ?? lines.locate("\"\(written)\""))?.line
        }
        func fail(_ key: String, _ message: String, hint: String? = nil) {
            diagnostics.append(.error("metadata.imageFactory.\(key) \(message).", file: file, line: line(key), hint: hint))
        }
        func string(_ key: String, rule: (String) -> String?, hint: String) -> String? {
            guard let raw = JSONText.value(factory, key) else { return nil }
            present = true
            guard let text = raw as? String else {
                fail(key, "must be a string")
                return nil
            }
            let value = text.trimmingCharacters(in: .whitespaces)
            if let problem = rule(value) {
                fail(key, "\"\(Naming.printable(value))\" \(problem)", hint: hint)
                return nil
            }
            return value
        }
        func count(_ key: String, unit: String) -> Int? {
            guard let raw = JSONText.value(factory, key) else { return nil }
            present = true
            guard let value = JSONScalar.int(raw), value >= 1, value <= Int(Int32.max) else {
                fail(key, "must be a whole number of \(unit) of at least 1")
                return nil
            }
            return value
        }

        metadata.definitionName = string("definitionName", rule: Naming.galleryImageNameProblem,
                                         hint: "Use 1 to 80 letters, digits, '.', '-' or '_', starting and ending with a letter or digit.")
        for key in ["publisher", "offer", "sku"] {
            let value = string(key, rule: Naming.galleryIdentifierProblem, hint: "Use 1 to 128 letters, digits, '.', '-' or '_'.")
            switch key {
            case "publisher": metadata.publisher = value
            case "offer": metadata.offer = value
            default: metadata.sku = value
            }
        }
        if let raw = JSONText.value(factory, "hyperVGeneration") {
            present = true
            if let text = raw as? String, ["V1", "V2"].contains(text.trimmingCharacters(in: .whitespaces).uppercased()) {
                metadata.hyperVGeneration = text.trimmingCharacters(in: .whitespaces).uppercased()
            } else {
                fail("hyperVGeneration", "must be \"V1\" or \"V2\"", hint: "V2 for an image from a generation 2 VM (UEFI boot), else V1.")
            }
        }
        metadata.recommendedVCPUs = count("recommendedVCPUs", unit: "vCPUs")
        metadata.recommendedMemoryGB = count("recommendedMemoryGB", unit: "GB")
        if let raw = JSONText.value(factory, "endOfLife") {
            present = true
            if let text = raw as? String, let date = ISODate.parse(text) {
                metadata.endOfLife = date
            } else {
                fail("endOfLife", "must be an ISO 8601 date such as \"2027-06-30\" (or a date and time with its zone, \"2027-06-30T00:00:00Z\")")
            }
        }
        return present ? metadata : nil
    }

    /// The data disks the lab VM asks for: the length of `properties.dataDiskParameters`, 1 when it
    /// is an ARM expression the factory cannot count, nil when there are none.
    static func requestedDataDisks(_ properties: [String: Any]) -> Int? {
        switch JSONText.value(properties, "dataDiskParameters") {
        case let list as [Any]: return list.isEmpty ? nil : list.count
        case let expression as String where expression.hasPrefix("["): return 1
        default: return nil
        }
    }
}

/// ISO 8601 dates as Labs.json and templates write them: a date (`2027-06-30`, midnight UTC) or a
/// date and time with its zone.
enum ISODate {
    static func parse(_ raw: String) -> Date? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return date }
        if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
        guard text.utf8.count == 10 else { return nil }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day())
    }
}

/// JSON scalars with their types told apart: `JSONSerialization` gives booleans and numbers as one
/// `NSNumber` type, and `true` must not pass for a count of 1.
enum JSONScalar {
    /// A whole number (not a boolean, not a fraction), else nil.
    static func int(_ value: Any) -> Int? {
        guard let number = value as? NSNumber, !isBoolean(number) else { return nil }
        let double = number.doubleValue
        guard double.rounded() == double, abs(double) < 9.0e15 else { return nil }
        return Int(double)
    }

    /// A JSON `true` or `false`, else nil (numbers are not booleans here).
    static func bool(_ value: Any) -> Bool? {
        guard let number = value as? NSNumber, isBoolean(number) else { return nil }
        return number.boolValue
    }

    private static func isBoolean(_ number: NSNumber) -> Bool {
        // Booleans are char-typed ("c") on every Foundation; JSON numbers are integers or doubles.
        let type = String(cString: number.objCType)
        return type == "c" || type == "B"
    }
}
