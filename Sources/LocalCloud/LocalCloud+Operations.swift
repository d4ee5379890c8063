import FactoryModel
import Foundation
import GRDB

// The local cloud's operations provider.
extension LocalCloud {
    public func pollOperation(_ handle: OperationHandle) async throws -> OperationStatus {
        guard let id = handle.id else { return .succeeded }
        return try await perform("pollOperation", kind: .read, write: false, subscription: nil, lab: nil, resource: "operations/" + id) {
            guard let record = try await self.db.read({ db in try db.record("operation", id, as: OperationRecord.self) }) else {
                throw CloudError(status: 404, code: "OperationNotFound", message: "The operation '\(id)' was not found.")
            }
            let now = self.clock.now()
            if now < record.completesAt { return .inProgress(retryAfter: max(0.01, record.completesAt.timeIntervalSince(now))) }
            if let error = record.error { return .failed(error) }
            return .succeeded
        }
    }
}
