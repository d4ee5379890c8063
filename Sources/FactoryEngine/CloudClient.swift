import FactoryModel
import Foundation

/// The one way the engine talks to a backend: retries transient errors and 429s with backoff
/// that honours Retry-After, and shares one throttle gate, so a throttled subscription slows
/// every job down instead of failing them. Waits for long-running operations by their hints.
public struct CloudClient: Sendable {
    public let backend: any CloudBackend
    public let retry: RetryPolicy
    let gate: ThrottleGate

    public init(backend: any CloudBackend, retry: RetryPolicy = .standard) {
        self.backend = backend
        self.retry = retry
        self.gate = ThrottleGate()
    }

    /// Calls the backend, retrying what may succeed on another try.
    public func call<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            try Task.checkCancellation()
            await gate.wait()
            do {
                return try await body()
            } catch let error as CloudError where error.isTransient && attempt + 1 < retry.maxAttempts {
                attempt += 1
                let backoff = min(retry.maxDelay, retry.baseDelay * pow(2, Double(attempt - 1)))
                let delay = max(error.retryAfter ?? 0, backoff * (0.5 + Double(StableHash.fnv1a("\(attempt)\(error.code)") % 500) / 1000))
                if error.status == 429 { await gate.pause(for: delay) }
                try await Task.sleep(for: .seconds(delay))
            }
        }
    }

    /// Polls a long-running operation until it ends, sleeping as the service says.
    public func wait(for handle: OperationHandle, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        var delay = handle.retryAfter
        while true {
            if delay > 0 { try await Task.sleep(for: .seconds(min(delay, retry.maxPollInterval))) }
            switch try await call({ try await backend.pollOperation(handle) }) {
            case .succeeded: return
            case .failed(let error): throw error
            case .inProgress(let retryAfter): delay = retryAfter
            }
            if Date() > deadline { throw CloudError(status: 408, code: "OperationTimedOut", message: "The operation did not finish within \(Int(timeout / 60)) minutes.") }
        }
    }

    /// Polls a resource until `done` says it is finished, sleeping by the resource's own hint.
    public func poll<T: Sendable>(timeout: Double, what: String, read: @Sendable () async throws -> T, hint: (T) -> Double?,
                                  done: (T) throws -> Bool) async throws -> T {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let value = try await call(read)
            if try done(value) { return value }
            if Date() > deadline {
                throw CloudError(status: 408, code: "OperationTimedOut", message: "\(what) did not finish within \(Int(max(1, timeout / 60))) minutes.")
            }
            let delay = min(retry.maxPollInterval, max(0.005, hint(value) ?? retry.defaultPollInterval))
            try await Task.sleep(for: .seconds(delay))
        }
    }
}

public struct RetryPolicy: Sendable {
    public var maxAttempts: Int
    public var baseDelay: Double
    public var maxDelay: Double
    /// Used when the service gives no hint (ARM's default is 60 s; we poll sooner).
    public var defaultPollInterval: Double
    public var maxPollInterval: Double

    public static let standard = RetryPolicy(maxAttempts: 8, baseDelay: 0.2, maxDelay: 30, defaultPollInterval: 10, maxPollInterval: 30)

    public init(maxAttempts: Int, baseDelay: Double, maxDelay: Double, defaultPollInterval: Double, maxPollInterval: Double) {
        self.maxAttempts = maxAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.defaultPollInterval = defaultPollInterval
        self.maxPollInterval = maxPollInterval
    }
}

/// When one job is throttled, every job waits until the Retry-After has passed.
actor ThrottleGate {
    private var until = Date.distantPast

    func pause(for seconds: Double) {
        let candidate = Date().addingTimeInterval(seconds)
        if candidate > until { until = candidate }
    }

    func wait() async {
        let remaining = until.timeIntervalSinceNow
        if remaining > 0 { try? await Task.sleep(for: .seconds(remaining)) }
    }
}
