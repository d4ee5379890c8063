import ArgumentParser
import AzureBackend
import FactoryModel
import Foundation

/// `imagefactory doctor`: will a run work from here? Who it signs in as, which labs and storage
/// accounts it reaches, and whether the identity may do there what the factory does. Changes nothing.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check sign-in, the labs and storage accounts, and the identity's permissions at each; change nothing.",
        discussion: "Exit 0 when all is well, 3 when sign-in fails, a lab cannot be read or a permission is missing (the scope and the role to grant are named).")

    @OptionGroup var factory: FactoryOptions

    func run() async throws {
        do {
            try await check()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ErrorMapper.report(error, ci: factory.output.ciMode)
        }
    }

    func check() async throws {
        let context = try await factory.context(writes: false)
        let configuration = context.configuration
        guard let azure = BackendOptions.azure(context.backend) else {
            let repositoryPath = try factory.repository.repositoryPath()
            Console.out("Backend: the embedded local cloud (\(factory.backend.stateDirectory(repositoryPath: repositoryPath).path)); every permission is granted.")
            Console.out("All is well.")
            return
        }
        Console.out("Backend: Azure (\(azure.http.profile.name.rawValue)), ARM at \(azure.http.profile.armEndpoint.absoluteString)")
        Console.out("Identity: \(azure.identity)")
        var problems: [String] = []
        let settings = configuration.settings
        let factoryID = LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab)
        let factoryLab: Lab
        do {
            factoryLab = try await azure.getLab(factoryID)
            Console.out("  ok    factory lab \(factoryID.name) (\(factoryLab.location)), storage account \(factoryLab.storageAccount.name)")
        } catch let error as CloudError {
            throw FactoryError(.backendUnavailable, "Cannot read the factory lab \(factoryID): \(error)",
                               hint: error.isUnavailable ? "Check the sign-in settings (see the README's 'Signing in to Azure')." : "Check factoryLab, subscriptionId and resourceGroup in FactorySettings.json.")
        }
        var targets: [Lab] = []
        var bySubscription: [String: [Lab]] = [:]
        for lab in configuration.labs {
            if bySubscription[lab.subscriptionId.lowercased()] == nil {
                bySubscription[lab.subscriptionId.lowercased()] = (try? await azure.listLabs(subscriptionId: lab.subscriptionId)) ?? []
            }
            let found = bySubscription[lab.subscriptionId.lowercased()]!.first {
                $0.id.name.lowercased() == lab.labName.lowercased() && (lab.resourceGroup == nil || $0.id.resourceGroup.lowercased() == lab.resourceGroup!.lowercased())
            }
            if let found {
                targets.append(found)
                Console.out("  ok    lab \(lab.labName) (\(found.id.resourceGroup), \(found.location)), storage account \(found.storageAccount.name)")
            } else {
                problems.append("lab \(lab.labName) in subscription \(lab.subscriptionId) was not found or cannot be read")
                Console.out("  FAIL  lab \(lab.labName) in subscription \(lab.subscriptionId): not found, or the identity cannot read it (needs Reader at least).")
            }
        }
        let findings = await PermissionCheck.run(PermissionCheck.scopes(factory: factoryLab, targets: targets, storageAuth: azure.storageAuth, galleries: configuration.galleries), on: azure)
        for finding in findings {
            if finding.ok {
                Console.out("  ok    \(finding.scope.what): \(finding.scope.actions.count + finding.scope.dataActions.count) permissions")
            } else if let error = finding.error {
                problems.append("\(finding.scope.what): \(error)")
                Console.out("  FAIL  \(finding.scope.what): cannot read permissions at \(finding.resourceID): \(error)")
            } else {
                problems.append("\(finding.scope.what) lacks \(finding.missing.joined(separator: ", "))")
                Console.out("  FAIL  \(finding.scope.what): missing \(finding.missing.joined(separator: ", "))")
                Console.out("        grant '\(finding.scope.role)' on \(finding.resourceID)")
            }
        }
        let stats = await azure.http.statistics()
        Console.out("\(stats.total) requests, correlation id \(azure.http.correlationID)")
        guard problems.isEmpty else {
            throw FactoryError(.backendUnavailable, "\(problems.count) problem(s), listed above as FAIL.",
                               hint: "Grant the roles named above (the README lists the least-privilege roles), then run doctor again.")
        }
        Console.out("All is well.")
    }
}
