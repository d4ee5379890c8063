import Foundation

/// Gallery image version numbers, derived from the VHD record they publish.
///
/// Scheme: a record captured at `YYYY-MM-DDTHH:MM:SSZ` (its `timestamp`, read in UTC) becomes
/// version `YYYY.MMDD.HHMMSS`, each part written as a plain integer without leading zeros:
/// 2026-12-02T14:35:01Z is `2026.1202.143501`, 2027-01-01T00:00:05Z is `2027.101.5`.
///
/// Why this shape:
/// - Azure reads a version as `Major.Minor.Patch`, three integers that must each fit a signed 32-bit
///   integer; the largest this scheme makes is `9999.1231.235959`.
/// - Azure orders versions (and picks "latest") numerically part by part, and these parts grow
///   with capture time to the second, across day, month and year boundaries, so the newest
///   capture is always Azure's latest version.
/// - The number depends on the record alone (not on the run, the clock or what the gallery holds),
///   so a rerun after a crash derives the same number and finds the version it already made
///   instead of making a second one or colliding.
/// - No leading zeros: Azure stores each part as an integer, and a name it rewrote (`0101` to `101`)
///   would not be found again by the name the factory asked for.
///
/// One definition receives one template's captures, and a template is captured at most once per
/// run, so two records of one definition never share a second.
public enum GalleryVersioning {
    /// The version a record is published as (see the type's scheme).
    public static func version(for record: VhdRecord) -> String {
        version(capturedAt: record.timestamp)
    }

    /// The version for a capture time: `YYYY.MMDD.HHMMSS` in UTC, fractions of a second dropped.
    public static func version(capturedAt date: Date) -> String {
        let c = utcCalendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let year = c.year ?? 0, month = c.month ?? 0, day = c.day ?? 0
        let hour = c.hour ?? 0, minute = c.minute ?? 0, second = c.second ?? 0
        return "\(year).\(month * 100 + day).\(hour * 10_000 + minute * 100 + second)"
    }

    /// The capture time (to the second, UTC) a version of this scheme stands for; nil for a version
    /// the factory did not make (`1.0.0`, or parts that are no date), so those are left alone.
    public static func captureDate(of version: String) -> Date? {
        guard let parts = parts(of: version) else { return nil }
        let (year, monthDay, time) = (parts[0], parts[1], parts[2])
        var c = DateComponents()
        c.year = year
        c.month = monthDay / 100
        c.day = monthDay % 100
        c.hour = time / 10_000
        c.minute = time / 100 % 100
        c.second = time % 100
        guard (1...9999).contains(year), (1...12).contains(c.month!), (1...31).contains(c.day!), (0...23).contains(c.hour!),
              (0...59).contains(c.minute!), (0...59).contains(c.second!), let date = utcCalendar.date(from: c),
              self.version(capturedAt: date) == version else { return nil }
        return date
    }

    /// Whether Azure accepts `version` as an image version name: three dot-separated non-negative
    /// integers (digits only), each at most `Int32.max`.
    public static func isValid(_ version: String) -> Bool { parts(of: version) != nil }

    /// Orders versions as Azure does: part by part, numerically (`2026.1202.9` before `2026.1202.10`).
    /// A version that is not valid orders before every valid one; two invalid ones by their text.
    public static func compare(_ lhs: String, _ rhs: String) -> ComparisonResult {
        switch (parts(of: lhs), parts(of: rhs)) {
        case let (a?, b?):
            for (x, y) in zip(a, b) where x != y { return x < y ? .orderedAscending : .orderedDescending }
            return .orderedSame
        case (nil, _?): return .orderedAscending
        case (_?, nil): return .orderedDescending
        case (nil, nil): return lhs == rhs ? .orderedSame : (lhs < rhs ? .orderedAscending : .orderedDescending)
        }
    }

    /// `compare` as a sort predicate: `versions.sorted(by: GalleryVersioning.areInIncreasingOrder)`.
    public static func areInIncreasingOrder(_ lhs: String, _ rhs: String) -> Bool {
        compare(lhs, rhs) == .orderedAscending
    }

    /// The three parts of a valid version, else nil.
    static func parts(of version: String) -> [Int]? {
        let pieces = version.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 3 else { return nil }
        var result: [Int] = []
        for piece in pieces {
            guard !piece.isEmpty, piece.count <= 10, piece.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let value = Int(piece), value <= Int(Int32.max) else { return nil }
            result.append(value)
        }
        return result
    }

    private static let utcCalendar: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()
}

/// A gallery version number as a comparable value (numeric order, see `GalleryVersioning.compare`).
public struct VersionNumber: Comparable, Sendable {
    public let text: String
    public init(_ text: String) { self.text = text }
    public static func < (a: VersionNumber, b: VersionNumber) -> Bool { GalleryVersioning.compare(a.text, b.text) == .orderedAscending }
    public static func == (a: VersionNumber, b: VersionNumber) -> Bool { GalleryVersioning.compare(a.text, b.text) == .orderedSame }
}
