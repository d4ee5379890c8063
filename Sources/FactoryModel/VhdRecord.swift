import Foundation

/// The JSON record the factory keeps beside each captured VHD (`<name>.json` next to `<name>.vhd`).
///
/// It keeps the original factory's fields (`imageName, imagePath, description, osType,
/// vhdFileName, timestamp`) and adds provenance and integrity. Records written by the original
/// PowerShell factory (culture-formatted timestamps, none of the new fields) decode too.
/// The record is written only after the VHD copy completed and verified: a record means "done".
public struct VhdRecord: Codable, Sendable, Equatable {
    /// Version of this format; absent in the original's records.
    public static let currentFormatVersion = 1

    public var formatVersion: Int?
    public var imageName: String
    /// Template path relative to GoldenImages/, with `/`.
    public var imagePath: String
    public var description: String
    public var osType: OSType
    public var vhdFileName: String
    public var timestamp: Date
    public var osState: OSState?
    public var commit: String?
    public var templateBlobSha: String?
    public var sizeBytes: Int64?
    /// Base64 MD5 of the VHD, as Content-MD5.
    public var md5: String?
    public var runId: String?

    public init(imageName: String, imagePath: String, description: String, osType: OSType, vhdFileName: String, timestamp: Date,
                osState: OSState?, commit: String?, templateBlobSha: String?, sizeBytes: Int64?, md5: String?, runId: String?) {
        self.formatVersion = VhdRecord.currentFormatVersion
        self.imageName = imageName
        self.imagePath = ImagePath.normalize(imagePath)
        self.description = description
        self.osType = osType
        self.vhdFileName = vhdFileName
        self.timestamp = timestamp
        self.osState = osState
        self.commit = commit
        self.templateBlobSha = templateBlobSha
        self.sizeBytes = sizeBytes
        self.md5 = md5
        self.runId = runId
    }

    /// Whether this is a generalized image (the original's records are: it always sysprepped).
    public var isGeneralized: Bool { (osState ?? .generalized) == .generalized }

    enum CodingKeys: String, CodingKey {
        case formatVersion, imageName, imagePath, description, osType, vhdFileName, timestamp, osState, commit, templateBlobSha, sizeBytes, md5, runId
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decodeIfPresent(Int.self, forKey: .formatVersion)
        if let v = formatVersion, v > VhdRecord.currentFormatVersion {
            throw DecodingError.dataCorruptedError(forKey: .formatVersion, in: c, debugDescription:
                "record format version \(v) is newer than this imagefactory understands (\(VhdRecord.currentFormatVersion)); upgrade imagefactory")
        }
        imageName = try c.decode(String.self, forKey: .imageName)
        imagePath = ImagePath.normalize(try c.decode(String.self, forKey: .imagePath))
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? ""
        let os = try c.decode(String.self, forKey: .osType)
        guard let osType = OSType(caseInsensitive: os) else {
            throw DecodingError.dataCorruptedError(forKey: .osType, in: c, debugDescription: "unknown osType \(os)")
        }
        self.osType = osType
        vhdFileName = try c.decode(String.self, forKey: .vhdFileName)
        if let seconds = try? c.decode(Double.self, forKey: .timestamp) {
            timestamp = Date(timeIntervalSince1970: seconds)
        } else {
            let text = try c.decode(String.self, forKey: .timestamp)
            guard let date = RecordTimestamp.parse(text) else {
                throw DecodingError.dataCorruptedError(forKey: .timestamp, in: c, debugDescription: "unreadable timestamp \"\(text)\"")
            }
            timestamp = date
        }
        osState = try c.decodeIfPresent(String.self, forKey: .osState).flatMap { OSState(caseInsensitive: $0) }
        commit = try c.decodeIfPresent(String.self, forKey: .commit)
        templateBlobSha = try c.decodeIfPresent(String.self, forKey: .templateBlobSha)
        sizeBytes = try c.decodeIfPresent(Int64.self, forKey: .sizeBytes)
        md5 = try c.decodeIfPresent(String.self, forKey: .md5)
        runId = try c.decodeIfPresent(String.self, forKey: .runId)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(formatVersion, forKey: .formatVersion)
        try c.encode(imageName, forKey: .imageName)
        try c.encode(imagePath, forKey: .imagePath)
        try c.encode(description, forKey: .description)
        try c.encode(osType.rawValue, forKey: .osType)
        try c.encode(vhdFileName, forKey: .vhdFileName)
        try c.encode(RecordTimestamp.format(timestamp), forKey: .timestamp)
        try c.encodeIfPresent(osState, forKey: .osState)
        try c.encodeIfPresent(commit, forKey: .commit)
        try c.encodeIfPresent(templateBlobSha, forKey: .templateBlobSha)
        try c.encodeIfPresent(sizeBytes, forKey: .sizeBytes)
        try c.encodeIfPresent(md5, forKey: .md5)
        try c.encodeIfPresent(runId, forKey: .runId)
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }

    public static func decode(_ data: Data) throws -> VhdRecord {
        let text = JSONText.decodeText(data) ?? ""
        return try JSONDecoder().decode(VhdRecord.self, from: Data(text.utf8))
    }
}

/// Timestamps in records: ISO-8601 for ours; for the original's, whatever the machine's
/// culture wrote (`11/22/2026 4:50:00 AM`, `22.11.2026 04:50:00`, `2026-11-22 04:50:00`, `/Date(ms)/`).
public enum RecordTimestamp {
    public static func format(_ date: Date) -> String {
        date.ISO8601Format(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    public static func parse(_ raw: String) -> Date? {
        let text = raw.trimmingCharacters(in: .whitespaces)
        if text.hasPrefix("/Date("), let end = text.firstIndex(of: ")") {
            let digits = text[text.index(text.startIndex, offsetBy: 6)..<end].prefix { $0.isNumber || $0 == "-" }
            if let ms = Double(digits) { return Date(timeIntervalSince1970: ms / 1000) }
        }
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return d }
        let formats = [
            "M/d/yyyy h:mm:ss a", "M/d/yyyy H:mm:ss", "M/d/yyyy h:mm a", "d.M.yyyy H:mm:ss", "d/M/yyyy H:mm:ss", "d-M-yyyy H:mm:ss",
            "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss", "yyyy/M/d H:mm:ss", "M/d/yyyy", "d.M.yyyy",
        ]
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in formats {
            formatter.dateFormat = format
            if let d = formatter.date(from: text) { return d }
        }
        return nil
    }
}
