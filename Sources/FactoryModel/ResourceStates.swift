import Foundation

/// A state the service reports as a string: known values map to cases, unknown ones are kept
/// as spelled. Encoded and decoded as that string.
public protocol ServiceState: Codable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    init(_ raw: String)
    var rawValue: String { get }
}

extension ServiceState {
    public init(stringLiteral value: String) { self.init(value) }
    public var description: String { rawValue }
    public init(from decoder: Decoder) throws { self.init(try decoder.singleValueContainer().decode(String.self)) }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A resource's `provisioningState`, as ARM reports it. Only `Succeeded`, `Failed` and
/// `Canceled` are terminal; anything else, including states this version does not know
/// (`Accepted`, `Updating`, a new one tomorrow), means "still changing": a caller waiting for
/// the end of an operation keeps waiting instead of calling it done.
public enum ProvisioningState: ServiceState {
    case accepted, creating, updating, running, deleting, succeeded, failed, canceled
    /// A state this version does not know, kept as the service spelled it.
    case other(String)

    public init(_ raw: String) {
        switch raw.lowercased() {
        case "accepted": self = .accepted
        case "creating": self = .creating
        case "updating": self = .updating
        case "running": self = .running
        case "deleting": self = .deleting
        case "succeeded": self = .succeeded
        case "failed": self = .failed
        case "canceled", "cancelled": self = .canceled
        default: self = .other(raw)
        }
    }

    /// The service's spelling.
    public var rawValue: String {
        switch self {
        case .accepted: "Accepted"
        case .creating: "Creating"
        case .updating: "Updating"
        case .running: "Running"
        case .deleting: "Deleting"
        case .succeeded: "Succeeded"
        case .failed: "Failed"
        case .canceled: "Canceled"
        case .other(let raw): raw
        }
    }

    /// Whether the operation behind the state has ended.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .canceled }
    /// Whether the operation ended without success.
    public var hasFailed: Bool { self == .failed || self == .canceled }

}

/// A VM's power state (the compute VM's `PowerState/...` status). Unknown strings are kept and
/// count as neither running nor deallocated.
public enum PowerState: ServiceState {
    case starting, running, stopping, stopped, deallocating, deallocated
    case other(String)

    public init(_ raw: String) {
        let value = raw.lowercased().hasPrefix("powerstate/") ? String(raw.dropFirst("powerstate/".count)) : raw
        switch value.lowercased() {
        case "starting": self = .starting
        case "running": self = .running
        case "stopping": self = .stopping
        case "stopped": self = .stopped
        case "deallocating": self = .deallocating
        case "deallocated": self = .deallocated
        default: self = .other(raw)
        }
    }

    public var rawValue: String {
        switch self {
        case .starting: "Starting"
        case .running: "Running"
        case .stopping: "Stopping"
        case .stopped: "Stopped"
        case .deallocating: "Deallocating"
        case .deallocated: "Deallocated"
        case .other(let raw): raw
        }
    }

}
