import FactoryEngine
import FactoryModel
import Foundation
import LocalCloud
import Testing

/// A clock that records every wait and returns at once (time moves by the waited amount).
final class RecordingClock: FactoryClock, @unchecked Sendable {
    // @unchecked: `lock` guards both fields.
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    private var waits: [Double] = []

    func now() -> Date { lock.withLock { current } }
    func sleep(seconds: Double) async throws {
        lock.withLock {
            waits.append(seconds)
            current = current.addingTimeInterval(max(0, seconds))
        }
    }
    var recorded: [Double] { lock.withLock { waits } }
}

/// Counts the tries of one simulated request that fails `failures` times first.
actor FlakyRequest {
    var tries = 0
    let failures: Int
    let error: CloudError
    init(failures: Int, error: CloudError) {
        self.failures = failures
        self.error = error
    }
    func attempt() throws -> Int {
        tries += 1
        if tries <= failures { throw error }
        return tries
    }
}

@Suite("CloudClient: one retry and poll policy")
struct CloudClientTests {
    static let unavailable = CloudError(status: 503, code: "ServiceUnavailable", message: "busy")

    /// The client needs a backend, but these tests only go through `call`, never to the backend.
    static func unusedBackend() throws -> LocalCloud {
        try LocalCloud(stateDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("cloud-client-tests-" + UUID().uuidString),
                       settings: LocalCloudSettings(latency: .instant, throttle: .off, faults: .none))
    }

    @Test("jobs that get the same 503 at the same moment retry at different times (random jitter)")
    func jitterIsRandom() async throws {
        let clock = RecordingClock()
        let client = CloudClient(backend: try Self.unusedBackend(), clock: clock)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let request = FlakyRequest(failures: 1, error: Self.unavailable)
                    let tries = try await client.call { try await request.attempt() }
                    #expect(tries == 2)
                }
            }
            try await group.waitForAll()
        }
        let waits = clock.recorded
        #expect(waits.count == 20, "every job waited once before its retry")
        #expect(Set(waits).count > 10, "the waits spread out: \(waits)")
        let policy = RetryPolicy.standard
        #expect(waits.allSatisfy { $0 >= policy.baseDelay / 2 && $0 <= policy.baseDelay }, "\(waits)")
    }

    @Test("the back-off grows, stays within its cap, and never undercuts Retry-After")
    func backoffShape() {
        let policy = RetryPolicy(maxAttempts: 8, baseDelay: 1, maxDelay: 10, defaultPollInterval: 1, maxPollInterval: 5)
        #expect(policy.delay(attempt: 1, retryAfter: nil, random: 0) == 0.5)
        #expect(policy.delay(attempt: 1, retryAfter: nil, random: 1) == 1)
        #expect(policy.delay(attempt: 3, retryAfter: nil, random: 1) == 4)
        #expect(policy.delay(attempt: 9, retryAfter: nil, random: 1) == 10)
        #expect(policy.delay(attempt: 1, retryAfter: 7, random: 0) == 7)
    }

    @Test("a 429 pauses every other job until its Retry-After has passed")
    func throttlePausesEveryone() async throws {
        let clock = RecordingClock()
        let client = CloudClient(backend: try Self.unusedBackend(), clock: clock)
        let throttled = FlakyRequest(failures: 1, error: CloudError(status: 429, code: "TooManyRequests", message: "slow down", retryAfter: 30))
        let tries = try await client.call { try await throttled.attempt() }
        #expect(tries == 2)
        let start = clock.now()
        // The gate was pushed 30 s past the 429: a second job waits for what is left of it, which is nothing now.
        let other = FlakyRequest(failures: 0, error: Self.unavailable)
        let otherTries = try await client.call { try await other.attempt() }
        #expect(otherTries == 1)
        #expect(clock.now() == start)
        #expect(clock.recorded == [30], "one wait of the Retry-After: \(clock.recorded)")
    }

    @Test("errors that cannot succeed on another try are not retried")
    func permanentErrorsAreNotRetried() async throws {
        let clock = RecordingClock()
        let client = CloudClient(backend: try Self.unusedBackend(), clock: clock)
        let request = FlakyRequest(failures: 5, error: CloudError(status: 400, code: "InvalidParameter", message: "no"))
        await #expect(throws: CloudError.self) { try await client.call { try await request.attempt() } }
        #expect(await request.tries == 1)
        #expect(clock.recorded.isEmpty)
    }
}
