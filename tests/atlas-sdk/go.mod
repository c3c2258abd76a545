module atlas-encryption-operator.invalid/tests/atlas-sdk

go 1.25.0

require go.mongodb.org/atlas-sdk/v20250312020 v20250312020.0.0

require (
	github.com/mongodb-forks/digest v1.1.0 // indirect
	golang.org/x/oauth2 v0.36.0 // indirect
)
