import FactoryModel
import Foundation

/// What `imagefactory doctor` checks: for each scope the factory works in, whether the signed-in
/// identity may do what the factory does there, read from ARM's
/// `Microsoft.Authorization/permissions` (Permissions_ListForResourceGroup, the union of the
/// identity's role assignments at and above the scope).
public struct PermissionCheck: Sendable {
    /// One scope and what the factory needs there.
    public struct Scope: Sendable, Equatable {
        public var what: String
        public var subscriptionId: String
        public var resourceGroup: String
        public var actions: [String]
        public var dataActions: [String]
        /// The built-in role that grants them (least privilege that needs no custom role).
        public var role: String
        /// `Namespace/type/name` of a resource to ask about, so a role assigned on the resource
        /// alone (a storage account, a lab) is seen; nil asks at the resource group.
        public var resource: String? = nil
    }

    /// The answer for one scope: the actions the identity lacks (empty when all is well).
    public struct Finding: Sendable, Equatable {
        public var scope: Scope
        public var missing: [String]
        public var error: String?
        public var ok: Bool { missing.isEmpty && error == nil }
        public var resourceID: String {
            "/subscriptions/\(scope.subscriptionId)/resourceGroups/\(scope.resourceGroup)" + (scope.resource.map { "/providers/\($0)" } ?? "")
        }
    }

    /// The scopes of a factory: the factory lab's group, each target lab's group, each storage account's group.
    public static func scopes(factory: Lab, targets: [Lab], storageAuth: StorageAuthMode, galleries: [GalleryTarget] = []) -> [Scope] {
        var scopes = [Scope(what: "factory lab \(factory.id.name)", subscriptionId: factory.id.subscriptionId, resourceGroup: factory.id.resourceGroup,
                            actions: ["Microsoft.DevTestLab/labs/read", "Microsoft.DevTestLab/labs/virtualMachines/write",
                                      "Microsoft.DevTestLab/labs/virtualMachines/delete", "Microsoft.DevTestLab/labs/virtualMachines/start/action",
                                      "Microsoft.DevTestLab/labs/virtualMachines/stop/action", "Microsoft.Resources/deployments/write",
                                      "Microsoft.Resources/deployments/delete", "Microsoft.Compute/disks/beginGetAccess/action",
                                      "Microsoft.Compute/disks/endGetAccess/action"],
                            dataActions: [], role: "Contributor")]
        for lab in targets {
            scopes.append(Scope(what: "target lab \(lab.id.name)", subscriptionId: lab.id.subscriptionId, resourceGroup: lab.id.resourceGroup,
                                actions: ["Microsoft.DevTestLab/labs/read", "Microsoft.DevTestLab/labs/customImages/write",
                                          "Microsoft.DevTestLab/labs/customImages/delete"],
                                dataActions: [], role: "Contributor", resource: "Microsoft.DevTestLab/labs/\(lab.id.name)"))
        }
        for lab in [factory] + targets {
            let account = lab.storageAccount
            switch storageAuth {
            case .entra:
                scopes.append(Scope(what: "storage account \(account.name) (\(lab.id.name))", subscriptionId: account.subscriptionId,
                                    resourceGroup: account.resourceGroup,
                                    actions: ["Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action"],
                                    dataActions: ["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                                                  "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
                                                  "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete"],
                                    role: "Storage Blob Data Contributor", resource: "Microsoft.Storage/storageAccounts/\(account.name)"))
            case .key:
                scopes.append(Scope(what: "storage account \(account.name) (\(lab.id.name))", subscriptionId: account.subscriptionId,
                                    resourceGroup: account.resourceGroup,
                                    actions: ["Microsoft.Storage/storageAccounts/read", "Microsoft.Storage/storageAccounts/listkeys/action"],
                                    dataActions: [], role: "Storage Account Key Operator Service Role", resource: "Microsoft.Storage/storageAccounts/\(account.name)"))
            }
        }
        for gallery in galleries {
            // At the resource group: the gallery may not exist yet.
            scopes.append(Scope(what: "gallery \(gallery.galleryName)", subscriptionId: gallery.subscriptionId, resourceGroup: gallery.resourceGroup,
                                actions: ["Microsoft.Compute/galleries/read", "Microsoft.Compute/galleries/write", "Microsoft.Compute/galleries/images/write",
                                          "Microsoft.Compute/galleries/images/delete", "Microsoft.Compute/galleries/images/versions/write",
                                          "Microsoft.Compute/galleries/images/versions/delete"],
                                dataActions: [], role: "Compute Gallery Artifacts Publisher (or Contributor)"))
        }
        // One finding per distinct scope and need.
        var seen = Set<String>()
        return scopes.filter { seen.insert("\($0.subscriptionId)/\($0.resourceGroup)/\($0.resource ?? "")/\($0.actions)/\($0.dataActions)".lowercased()).inserted }
    }

    /// Asks ARM what the identity may do at each scope.
    public static func run(_ scopes: [Scope], on backend: AzureBackend) async -> [Finding] {
        var findings: [Finding] = []
        for scope in scopes {
            do {
                // Permissions_ListForResource (with no parent resource path) or Permissions_ListForResourceGroup.
                let base = "/subscriptions/\(scope.subscriptionId)/resourcegroups/\(scope.resourceGroup)" + (scope.resource.map { "/providers/\($0)" } ?? "")
                let permissions = try await backend.armList("\(base)/providers/Microsoft.Authorization/permissions", apiVersion: AzureAPIVersions.authorization)
                let missing = scope.actions.filter { !allowed($0, permissions, data: false) }
                    + scope.dataActions.filter { !allowed($0, permissions, data: true) }
                findings.append(Finding(scope: scope, missing: missing))
            } catch let error as CloudError {
                findings.append(Finding(scope: scope, missing: [], error: error.description))
            } catch {
                findings.append(Finding(scope: scope, missing: [], error: "\(error)"))
            }
        }
        return findings
    }

    /// Whether some permission grants `action` and none of its not-actions takes it away.
    static func allowed(_ action: String, _ permissions: [[String: Any]], data: Bool) -> Bool {
        permissions.contains { permission in
            let grants = permission[data ? "dataActions" : "actions"] as? [String] ?? []
            let denies = permission[data ? "notDataActions" : "notActions"] as? [String] ?? []
            return grants.contains { matches($0, action) } && !denies.contains { matches($0, action) }
        }
    }

    /// ARM's action patterns: case-insensitive, `*` matches any run of characters.
    static func matches(_ pattern: String, _ action: String) -> Bool {
        let escaped = NSRegularExpression.escapedPattern(for: pattern.lowercased()).replacingOccurrences(of: "\\*", with: ".*")
        return action.lowercased().range(of: "^\(escaped)$", options: .regularExpression) != nil
    }
}
