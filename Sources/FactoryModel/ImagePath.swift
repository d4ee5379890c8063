import Foundation

/// ImagePath rules: a path relative to `GoldenImages/` naming one template or a folder.
///
/// The original compared plain string prefixes, so `Win2016` also matched `Win2016R2/...`;
/// here matching is by whole path segments, and `\` and `/` are the same separator.
public enum ImagePath {
    /// `\` to `/`, no leading `./` or `/`, no trailing `/`, no empty segments.
    public static func normalize(_ raw: String) -> String {
        if isNormalized(raw) { return raw }  // the usual case, checked without allocating
        return raw.replacingOccurrences(of: "\\", with: "/")
            .split(separator: "/", omittingEmptySubsequences: true)
            .filter { $0 != "." }
            .joined(separator: "/")
    }

    /// Whether `normalize` would return `path` unchanged: no `\`, no empty or `.` segments.
    private static func isNormalized(_ path: String) -> Bool {
        var segmentLength = 0
        var segmentIsDot = false
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "\\"):
                return false
            case UInt8(ascii: "/"):
                if segmentLength == 0 || segmentIsDot { return false }
                segmentLength = 0
            default:
                segmentIsDot = segmentLength == 0 && byte == UInt8(ascii: ".")
                segmentLength += 1
            }
        }
        return !segmentIsDot && (segmentLength > 0 || path.isEmpty)
    }

    /// Whether `imagePath` (a folder or a file) covers `templatePath`, by whole segments.
    public static func covers(_ imagePath: String, _ templatePath: String, ignoringCase: Bool = false) -> Bool {
        let a = normalize(imagePath)
        let b = normalize(templatePath)
        let (x, y) = ignoringCase ? (a.lowercased(), b.lowercased()) : (a, b)
        if x.isEmpty { return true }
        return y == x || y.hasPrefix(x + "/")
    }
}

/// How one ImagePath of a lab resolved against the templates of a commit.
public struct ImagePathResolution: Sendable, Equatable {
    /// The templates it names, sorted.
    public var templates: [String]
    /// Set when the path matched only ignoring case: the path as it really is.
    public var caseCorrectedPath: String?
}

/// Resolves ImagePaths against the set of template paths in O(1) per lookup, so thousands of
/// labs resolve in milliseconds: every folder prefix and file path maps to the templates below it.
public struct ImagePathIndex: Sendable {
    private var exact: [String: [Int]] = [:]  // folder or file path -> indexes into templatePaths, ascending
    private var folded: [String: [String]] = [:]  // lowercased key -> real keys
    public let templatePaths: [String]

    public init(templatePaths: [String]) {
        self.templatePaths = templatePaths.sorted()
        exact.reserveCapacity(self.templatePaths.count + self.templatePaths.count / 4)  // files plus folders
        for (n, path) in self.templatePaths.enumerated() {
            let segments = path.split(separator: "/")
            var prefix = ""
            for (i, segment) in segments.enumerated() {
                prefix = i == 0 ? String(segment) : prefix + "/" + segment
                let known = exact.count
                exact[prefix, default: []].append(n)
                if exact.count > known {  // a new folder or file
                    folded[prefix.lowercased(), default: []].append(prefix)
                }
            }
        }
    }

    /// The templates an ImagePath names: exact case first, then ignoring case (with the real path).
    /// An empty path means every template. Nil when nothing matches.
    public func resolve(_ rawPath: String) -> ImagePathResolution? {
        guard let hit = resolveIndexes(rawPath) else { return nil }
        return ImagePathResolution(templates: hit.indexes.map { templatePaths[$0] }, caseCorrectedPath: hit.caseCorrectedPath)
    }

    /// `resolve` as indexes into `templatePaths` (ascending), so callers can merge thousands of
    /// resolutions without hashing path strings.
    func resolveIndexes(_ rawPath: String) -> (indexes: [Int], caseCorrectedPath: String?)? {
        let path = ImagePath.normalize(rawPath)
        if path.isEmpty { return (Array(templatePaths.indices), nil) }
        if let hit = exact[path] { return (hit, nil) }
        if let real = folded[path.lowercased()]?.first, let hit = exact[real] {
            return (hit, real)
        }
        return nil
    }

    /// The existing folder or file path closest to a path that matched nothing, as a hint.
    public func closest(to rawPath: String) -> String? {
        let path = ImagePath.normalize(rawPath).lowercased()
        var best: (String, Int)?
        for candidate in exact.keys {
            let distance = EditDistance.levenshtein(path, candidate.lowercased(), limit: best?.1 ?? Int.max)
            if best == nil || distance < best!.1 || (distance == best!.1 && candidate < best!.0) {
                best = (candidate, distance)
            }
        }
        guard let (candidate, distance) = best else { return nil }
        return distance <= max(3, path.count / 2) ? candidate : nil
    }
}

enum EditDistance {
    /// Levenshtein distance over characters, stopping early once it exceeds `limit`.
    static func levenshtein(_ a: String, _ b: String, limit: Int) -> Int {
        let x = Array(a), y = Array(b)
        if abs(x.count - y.count) > limit { return Int.max }
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            var rowMin = current[0]
            for j in 1...y.count {
                let cost = x[i - 1] == y[j - 1] ? 0 : 1
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                rowMin = Swift.min(rowMin, current[j])
            }
            if rowMin > limit { return Int.max }
            swap(&previous, &current)
        }
        return previous[y.count]
    }
}
