module github.com/d1backup/d1backup/scripts/node

// This stub keeps node_modules (aws-cdk ships Go templates) out of the main module.
