// Programs built into the container images of the real-node tests and demo (hack/images/build.sh):
// no dependencies beyond the standard library, so they build offline in seconds.
module github.com/rightsizer/rightsizer/hack/images

go 1.24.0
