import Foundation

/// One line of the local cloud's `operations.jsonl`: the one reader of the audit log that tests
/// and benchmarks use to prove limits, request counts and that read-only commands wrote nothing.
public struct LoggedOperation: Decodable, Sendable {
    public var start: String
    public var end: String
    public var kind: String
    public var resource: String
    public var result: String
    public var status: Int
    public var write: Bool
    public var job: String?
    public var run: String?
    /// The lab an ARM operation is about (nil for Blob operations).
    public var lab: String?
    public var subscription: String?
    /// The process that made the request (several processes share one state directory).
    public var pid: Int32?

    /// Every operation logged in a state directory (empty when nothing was logged yet).
    public static func read(stateDirectory: URL) throws -> [LoggedOperation] {
        let url = stateDirectory.appendingPathComponent("operations.jsonl")
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        let text = try String(contentsOf: url, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(LoggedOperation.self, from: Data($0.utf8)) }
    }
}
