import FactoryModel
import Foundation

/// The one way the engine and the CLI talk to a backend: retries transient errors and 429s with
/// exponential back-off, random jitter and Retry-After, and shares one throttle gate, so a
/// throttled subscription slows every job down instead of failing them. Waits for long-running
/// operations by their hints. Every wait goes through the injected clock.
public struct CloudClient: Sendable {
    public let backend: any CloudBackend
    public let retry: RetryPolicy
    public let clock: any FactoryClock
    let gate: ThrottleGate
    /// A uniform random number in [0, 1) for jitter. Real randomness by default, so jobs that got
    /// the same 503 at the same moment do not retry in lockstep; tests may pin it.
    let random: @Sendable () -> Double

    public init(backend: any CloudBackend, retry: RetryPolicy = .standard, clock: any FactoryClock = SystemClock(),
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        self.backend = backend
        self.retry = retry
        self.clock = clock
        self.random = random
        self.gate = ThrottleGate(clock: clock)
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
                let delay = retry.delay(attempt: attempt, retryAfter: error.retryAfter, random: random())
                if error.status == 429 { await gate.pause(for: delay) }
                try await clock.sleep(seconds: delay)
            }
        }
    }

    /// Polls a long-running operation until it ends, sleeping as the service says.
    public func wait(for handle: OperationHandle, timeout: Double) async throws {
        guard handle.id != nil else { return }  // completed synchronously
        let deadline = clock.now().addingTimeInterval(timeout)
        var delay = handle.retryAfter
        while true {
            if delay > 0 { try await clock.sleep(seconds: min(delay, retry.maxPollInterval)) }
            switch try await call({ try await backend.pollOperation(handle) }) {
            case .succeeded: return
            case .failed(let error): throw error
            case .inProgress(let retryAfter): delay = retryAfter
            }
            if clock.now() > deadline { throw CloudError(status: 408, code: "OperationTimedOut", message: "The operation did not finish within \(Int(max(1, timeout / 60))) minutes.") }
        }
    }

    /// Polls a resource until `done` says it is finished, sleeping by the resource's own hint.
    public func poll<T: Sendable>(timeout: Double, what: String, read: @Sendable () async throws -> T, hint: (T) -> Double?,
                                  done: (T) throws -> Bool) async throws -> T {
        let deadline = clock.now().addingTimeInterval(timeout)
        while true {
            let value = try await call(read)
            if try done(value) { return value }
            if clock.now() > deadline {
                throw CloudError(status: 408, code: "OperationTimedOut", message: "\(what) did not finish within \(Int(max(1, timeout / 60))) minutes.")
            }
            let delay = min(retry.maxPollInterval, max(0.005, hint(value) ?? retry.defaultPollInterval))
            try await clock.sleep(seconds: delay)
        }
    }
}

/// How long to wait between tries, and between polls.
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

    /// The wait before retry number `attempt` (1-based): exponential back-off capped at `maxDelay`,
    /// with "equal jitter" (half fixed, half random) so simultaneous failures spread out, and
    /// never shorter than the service's Retry-After.
    public func delay(attempt: Int, retryAfter: Double?, random: Double) -> Double {
        let backoff = min(maxDelay, baseDelay * pow(2, Double(max(0, attempt - 1))))
        let jittered = backoff * (0.5 + 0.5 * min(max(random, 0), 1))
        return max(retryAfter ?? 0, jittered)
    }
}

/// When one job is throttled, every job waits until the Retry-After has passed.
actor ThrottleGate {
    private var until = Date.distantPast
    private let clock: any FactoryClock

    init(clock: any FactoryClock) { self.clock = clock }

    func pause(for seconds: Double) {
        let candidate = clock.now().addingTimeInterval(seconds)
        if candidate > until { until = candidate }
    }

    func wait() async {
        let remaining = clock.seconds(until: until)
        if remaining > 0 { try? await clock.sleep(seconds: remaining) }
    }
}
