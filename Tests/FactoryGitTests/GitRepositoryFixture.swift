import Foundation

import TestSupport

/// The shared git fixture (TestSupport), under the name these tests grew up with.
typealias GitRepositoryFixture = GitTestRepository

/// Small valid configuration files, enough for the loader to accept them.
enum SampleFiles {
    static func labs(_ imagePaths: [String], labName: String = "DevLab") -> String {
        let paths = imagePaths.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\"))\"" }.joined(separator: ", ")
        return """
            {
              "Labs": [
                {
                  "SubscriptionId": "11111111-1111-4111-8111-111111111111",
                  "ResourceGroup": "rg-labs",
                  "LabName": "\(labName)",
                  "ImagePaths": [\(paths)]
                }
              ]
            }

            """
    }

    static func template(notes: String = "A golden image", osType: String = "Windows") -> String {
        """
        {
          "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json",
          "contentVersion": "1.0.0.0",
          "parameters": {
            "newVMName": { "type": "string" },
            "labName": { "type": "string" },
            "size": { "type": "string" },
            "userName": { "type": "string" },
            "password": { "type": "securestring" }
          },
          "resources": [
            {
              "apiVersion": "2018-10-15-preview",
              "type": "Microsoft.DevTestLab/labs/virtualmachines",
              "name": "[concat(parameters('labName'), '/', parameters('newVMName'))]",
              "location": "[resourceGroup().location]",
              "properties": {
                "notes": "\(notes)",
                "galleryImageReference": {
                  "offer": "WindowsServer",
                  "publisher": "MicrosoftWindowsServer",
                  "sku": "2016-Datacenter",
                  "osType": "\(osType)",
                  "version": "latest"
                },
                "size": "[parameters('size')]",
                "userName": "[parameters('userName')]",
                "password": "[parameters('password')]"
              }
            }
          ]
        }

        """
    }
}

extension String {
    var utf16LEWithBOM: Data {
        var data = Data([0xFF, 0xFE])
        for unit in utf16 { data.append(contentsOf: [UInt8(unit & 0xFF), UInt8(unit >> 8)]) }
        return data
    }

    var utf8WithBOM: Data { Data([0xEF, 0xBB, 0xBF]) + Data(utf8) }
}
