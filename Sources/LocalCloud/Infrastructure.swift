import FactoryModel
import Foundation
import GRDB

/// Generic record storage: one table of JSON bodies keyed by kind and key, with a parent key
/// for listing. Every change runs in a GRDB transaction.
extension Database {
    static let decoder = JSONDecoder()
    static let encoder = JSONEncoder()

    func record<T: Decodable>(_ kind: String, _ key: String, as type: T.Type = T.self) throws -> T? {
        guard let data = try Data.fetchOne(self, sql: "SELECT body FROM resources WHERE kind = ? AND key = ?", arguments: [kind, key]) else {
            return nil
        }
        return try Database.decoder.decode(T.self, from: data)
    }

    func records<T: Decodable>(_ kind: String, parent: String, as type: T.Type = T.self) throws -> [T] {
        try Data.fetchAll(self, sql: "SELECT body FROM resources WHERE kind = ? AND parent = ? ORDER BY key", arguments: [kind, parent])
            .map { try Database.decoder.decode(T.self, from: $0) }
    }

    func allRecords<T: Decodable>(_ kind: String, as type: T.Type = T.self) throws -> [T] {
        try Data.fetchAll(self, sql: "SELECT body FROM resources WHERE kind = ? ORDER BY key", arguments: [kind])
            .map { try Database.decoder.decode(T.self, from: $0) }
    }

    func save<T: Encodable>(_ kind: String, _ key: String, parent: String, _ value: T) throws {
        try execute(sql: "INSERT OR REPLACE INTO resources(kind, key, parent, body) VALUES (?, ?, ?, ?)",
                    arguments: [kind, key, parent, try Database.encoder.encode(value)])
    }

    func remove(_ kind: String, _ key: String) throws {
        try execute(sql: "DELETE FROM resources WHERE kind = ? AND key = ?", arguments: [kind, key])
    }

    func count(_ kind: String, parent: String) throws -> Int {
        try Int.fetchOne(self, sql: "SELECT COUNT(*) FROM resources WHERE kind = ? AND parent = ?", arguments: [kind, parent]) ?? 0
    }

    static func migrate(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS resources(
                kind TEXT NOT NULL, key TEXT NOT NULL, parent TEXT NOT NULL, body BLOB NOT NULL,
                PRIMARY KEY(kind, key));
            CREATE INDEX IF NOT EXISTS resources_parent ON resources(kind, parent);
            """)
    }
}

/// ARM's write throttling: a token bucket per subscription. Public so that `local serve` can
/// throttle at its ARM front door (where Azure does) with the same rule.
public actor WriteThrottle {
    private var buckets: [String: Bucket] = [:]
    private let settings: ThrottleSettings

    /// One subscription's tokens as of a moment.
    struct Bucket: Codable, Sendable {
        var tokens: Double
        var at: Date
    }

    public init(_ settings: ThrottleSettings) { self.settings = settings }

    /// Takes one write token and returns how many remain, or throws 429 with the seconds until one is available.
    public func take(subscription: String, now: Date = Date()) throws -> Int {
        guard settings.enabled else { return Int.max }
        var bucket = buckets[subscription] ?? Bucket(tokens: settings.capacity, at: now)
        defer { buckets[subscription] = bucket }
        return try Self.take(&bucket, subscription: subscription, settings: settings, now: now)
    }

    /// The rule, on a bucket kept anywhere (this actor's memory, or the state directory's database
    /// when several processes share one local cloud).
    static func take(_ bucket: inout Bucket, subscription: String, settings: ThrottleSettings, now: Date) throws -> Int {
        bucket.tokens = min(settings.capacity, bucket.tokens + max(0, now.timeIntervalSince(bucket.at)) * settings.refillPerSecond)
        bucket.at = max(bucket.at, now)
        if bucket.tokens < 1 {
            let wait = settings.refillPerSecond > 0 ? (1 - bucket.tokens) / settings.refillPerSecond : 60
            throw CloudError(
                status: 429, code: "SubscriptionRequestsThrottled",
                message: "Number of 'write' requests for subscription '\(subscription)' exceeded. Please try again after '\(Int(wait.rounded(.up)))' seconds after additional tokens are available.",
                retryAfter: wait)
        }
        bucket.tokens -= 1
        return Int(bucket.tokens)
    }
}

/// Seeded faults: a draw depends on the seed, the operation kind, the resource and the attempt
/// number for that resource, so the same seed gives the same faults whatever the request order.
actor FaultInjector {
    let settings: FaultSettings
    private var attempts: [String: Int] = [:]

    init(_ settings: FaultSettings) { self.settings = settings }

    /// The rates for a kind, or nil when no fault can happen (the common case, kept cheap).
    nonisolated func rates(_ kind: OperationKind) -> FaultSettings.Rates? { settings.rates[kind] }

    /// A uniform draw in [0, 1) for this (kind, resource, fault) at the current attempt.
    func draw(_ kind: OperationKind, resource: String, fault: String) -> Double {
        let key = "\(kind.rawValue)|\(resource.lowercased())|\(fault)"
        let attempt = attempts[key, default: 0]
        attempts[key] = attempt + 1
        // FNV-1a barely moves its high bits when only the last characters differ (the attempt number):
        // mix them (SplitMix64's finalizer) so each attempt is a fresh draw, not a repeat of the first.
        var h = StableHash.fnv1a("\(settings.seed)|\(key)|\(attempt)")
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        return Double(h >> 11) / Double(1 << 53)
    }

    func roll(_ kind: OperationKind, resource: String, fault: String, rate: Double) -> Bool {
        guard rate > 0 else { return false }
        return draw(kind, resource: resource, fault: fault) < rate
    }
}

/// The audit trail: one JSON object a line in `operations.jsonl`.
final class OperationsLog: Sendable {
    struct Entry: Codable, Sendable {
        var start: String
        var end: String
        var kind: String
        var subscription: String?
        var lab: String?
        var resource: String
        var result: String
        var status: Int
        var write: Bool
        var job: String?
        var run: String?
        var pid: Int32
    }

    /// Opened with O_APPEND: each line goes out in one write at the end of the file, so several
    /// processes (two runs, `local serve` and the CLI) never overwrite each other's lines.
    private let descriptor: Int32

    init(url: URL) {
        descriptor = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    static func timestamp(_ date: Date) -> String {
        date.ISO8601Format(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    func append(_ entry: Entry) {
        guard descriptor >= 0, var line = try? JSONEncoder.sorted.encode(entry) else { return }
        line.append(UInt8(ascii: "\n"))
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}
