import FactoryModel
import Foundation
import LocalCloud

/// The compute VM and OS disk behind a lab VM (resource group `{lab}-{vm}`).
extension LocalServeService {
    func computeVM(_ request: ServeRequest, _ p: [String: String]) async throws -> ServeResponse {
        .armError(501, "NotImplemented", "Microsoft.Compute/virtualMachines is not emulated by the local cloud yet.")
    }

    func disk(_ request: ServeRequest, _ p: [String: String], action: String?) async throws -> ServeResponse {
        .armError(501, "NotImplemented", "Microsoft.Compute/disks is not emulated by the local cloud yet.")
    }
}
