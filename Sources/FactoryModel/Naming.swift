import Foundation

/// Deterministic names for factory VMs and images, compatible with the original factory's scheme.
public enum Naming {
    /// The longest Windows computer name, which DevTest Labs enforces for Windows VMs.
    public static let maxVMNameLength = 15
    /// Azure Resource Manager's limit on a deployment template.
    public static let maxTemplateBytes = 4 * 1024 * 1024

    /// A name as it can be shown: control characters (NUL, newlines) escaped.
    public static func printable(_ text: String) -> String {
        text.unicodeScalars.map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
    }

    /// Whether a subscription id is a GUID, as Azure's are.
    public static func subscriptionIdProblem(_ id: String) -> String? {
        let groups = id.split(separator: "-", omittingEmptySubsequences: false)
        let hex = groups.allSatisfy { $0.allSatisfy { $0.isHexDigit && $0.isASCII } }
        return groups.map(\.count) == [8, 4, 4, 4, 12] && hex ? nil : "is not a subscription id (a GUID such as 00000000-0000-0000-0000-000000000000)"
    }

    /// DevTest Labs' rule for a lab name: 1 to 50 ASCII letters, digits, hyphens and underscores.
    public static func labNameProblem(_ name: String) -> String? {
        if name.isEmpty || name.count > 50 { return "must be 1 to 50 characters long (it has \(name.count))" }
        let allowed = name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_") }
        return allowed ? nil : "may contain only letters, digits, hyphens and underscores"
    }

    /// Azure's rule for a resource group name: 1 to 90 letters, digits, underscores, hyphens,
    /// periods and parentheses, not ending in a period (so never `/`, `..` paths or control characters).
    public static func resourceGroupProblem(_ name: String) -> String? {
        if name.isEmpty || name.count > 90 { return "must be 1 to 90 characters long (it has \(name.count))" }
        let allowed = name.unicodeScalars.allSatisfy {
            CharacterSet.letters.contains($0) || CharacterSet.decimalDigits.contains($0) || "_-.()".unicodeScalars.contains($0)
        }
        if !allowed { return "may contain only letters, digits, underscores, hyphens, periods and parentheses" }
        if name.hasSuffix(".") { return "cannot end with a period" }
        return nil
    }

    /// The original's VM name: the file's base name without `_`, spaces and `.`, `vm` in front
    /// if all digits, cut to 13 characters when longer than 15. Other characters Azure
    /// refuses are dropped too.
    public static func baseVMName(forTemplate path: String) -> String {
        // The last non-empty segment, found from the end (as `split(separator: "/").last` would).
        var end = path.endIndex
        while end > path.startIndex && path[path.index(before: end)] == "/" { end = path.index(before: end) }
        let file = end == path.startIndex ? path
            : String(path[(path[..<end].lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex)..<end])
        let stem = file.lowercased().hasSuffix(".json") ? String(file.dropLast(5)) : file
        // ASCII letters, digits and hyphens (the ASCII members of CharacterSet.alphanumerics), tested bytewise.
        var name = String(decoding: stem.utf8.filter { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
        }, as: UTF8.self)
        while name.hasPrefix("-") { name.removeFirst() }
        while name.hasSuffix("-") { name.removeLast() }
        if name.isEmpty { name = "vm" }
        if name.allSatisfy(\.isNumber) { name = "vm" + name }
        if name.count > maxVMNameLength { name = String(name.prefix(13)) }
        while name.hasSuffix("-") { name.removeLast() }
        return name
    }

    /// Assigns collision-free VM names to templates (sorted by path). The first template keeps the
    /// base name; a later one colliding with it gets its first 12 characters plus three digits
    /// derived from a hash of its path: deterministic where the original used a random number.
    public static func assignVMNames(templatePaths: [String], reserved: Set<String> = []) -> [String: String] {
        var taken = Set(reserved.map { $0.lowercased() })
        var result: [String: String] = [:]
        for path in templatePaths.sorted() {
            var name = baseVMName(forTemplate: path)
            if taken.contains(name.lowercased()) {
                // Three digits after 12 characters first; should all 1,000 be taken, more digits
                // after a shorter stem, so the search always ends within the 15-character limit.
                let base = name
                var width = 3
                search: while true {
                    let stem = String(base.prefix(maxVMNameLength - width))
                    let modulus = Int(pow(10, Double(width)))
                    let start = Int(StableHash.fnv1a(path) % UInt64(modulus))
                    for step in 0..<modulus {
                        let digits = String((start + step) % modulus)
                        name = stem + String(repeating: "0", count: width - digits.count) + digits
                        if !taken.contains(name.lowercased()) { break search }
                    }
                    width += 1
                }
            }
            taken.insert(name.lowercased())
            result[path] = name
        }
        return result
    }

    /// Whether a VM name follows Azure's rules: 1 to 15 letters, digits and hyphens for Windows
    /// (up to 64 for Linux), not all digits, not starting or ending with a hyphen.
    public static func vmNameProblem(_ name: String, osType: OSType) -> String? {
        let limit = osType == .windows ? maxVMNameLength : 64
        if name.isEmpty { return "is empty" }
        if name.count > limit { return "is \(name.count) characters long; \(osType.rawValue) VM names are at most \(limit)" }
        if !name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-") }) {
            return "may contain only letters, digits and hyphens"
        }
        if name.allSatisfy(\.isNumber) { return "cannot be all digits" }
        if name.hasPrefix("-") || name.hasSuffix("-") { return "cannot start or end with a hyphen" }
        return nil
    }

    /// The original's image base name: the template path without `.json`, folders joined with
    /// `_`, `.` to `_`, spaces to `-` (so `Win2016/Datacenter.json` is `Win2016_Datacenter`).
    /// Joining every folder (not only the last) keeps names from nested folders unique.
    public static func imageBaseName(forTemplate path: String) -> String {
        var stem = path
        if stem.lowercased().hasSuffix(".json") { stem = String(stem.dropLast(5)) }
        if stem.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            // Printable ASCII (every byte its own Character): the same mapping without Character properties.
            var bytes: [UInt8] = []
            bytes.reserveCapacity(stem.utf8.count)
            for segment in stem.utf8.split(separator: UInt8(ascii: "/")) {
                if !bytes.isEmpty { bytes.append(UInt8(ascii: "_")) }
                for byte in segment {
                    switch byte {
                    case UInt8(ascii: "."): bytes.append(UInt8(ascii: "_"))
                    case UInt8(ascii: " "): bytes.append(UInt8(ascii: "-"))
                    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                         UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                        bytes.append(byte)
                    default: bytes.append(UInt8(ascii: "-"))
                    }
                }
            }
            return String(decoding: bytes, as: UTF8.self)
        }
        let joined = stem.split(separator: "/").joined(separator: "_")
        return String(joined.map { c -> Character in
            switch c {
            case ".": return "_"
            case " ": return "-"
            case _ where c.isLetter || c.isNumber || c == "_" || c == "-": return c
            default: return "-"
            }
        })
    }

    /// The date suffix the original used: `Nov-22-2026` (always English month names).
    public static func dateSuffix(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return "\(months[c.month! - 1])-\(c.day!)-\(c.year!)"
    }

    /// A dated image name that is not yet taken: `Base-Nov-22-2026`, then with `A`, `B`, ... `Z`,
    /// `ZA`, ... appended, as the original did when an image was made twice in a day.
    public static func datedImageName(base: String, date: Date, taken: Set<String>) -> String {
        let plain = "\(base)-\(dateSuffix(date))"
        let lowerTaken = Set(taken.map { $0.lowercased() })
        if !lowerTaken.contains(plain.lowercased()) { return plain }
        var suffix = "A"
        while lowerTaken.contains((plain + suffix).lowercased()) {
            if suffix.last == "Z" { suffix += "A" } else {
                let last = suffix.removeLast()
                suffix.append(Character(UnicodeScalar(last.asciiValue! + 1)))
            }
        }
        return plain + suffix
    }
}
