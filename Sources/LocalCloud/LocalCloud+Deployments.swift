import FactoryModel
import Foundation
import GRDB

// The local cloud's deployments provider.
extension LocalCloud {
    public func listDeployments(subscriptionId: String, resourceGroup: String) async throws -> [Deployment] {
        try await perform("listDeployments", kind: .read, write: false, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/deployments") {
            try await self.db.read { db in
                let now = self.clock.now()
                return try db.records("deployment", parent: LocalCloud.rgKey(subscriptionId, resourceGroup), as: DeploymentRecord.self).map { $0.view(at: now) }
            }
        }
    }

    public func deleteDeployment(subscriptionId: String, resourceGroup: String, name: String) async throws {
        try await perform("deleteDeployment", kind: .deployment, write: true, subscription: subscriptionId, lab: nil, resource: "/subscriptions/\(subscriptionId)/resourceGroups/\(resourceGroup)/deployments/\(name)") {
            try await self.db.write { db in
                let key = LocalCloud.rgKey(subscriptionId, resourceGroup) + "/" + name.lowercased()
                guard let record = try db.record("deployment", key, as: DeploymentRecord.self) else {
                    throw CloudError(status: 404, code: "DeploymentNotFound", message: "Deployment '\(name)' could not be found.")
                }
                if record.view(at: self.clock.now()).provisioningState == "Running" {
                    throw CloudError(status: 409, code: "DeploymentActive", message: "The deployment '\(name)' is still running and cannot be deleted.")
                }
                try db.remove("deployment", key)
            }
        }
    }
}
