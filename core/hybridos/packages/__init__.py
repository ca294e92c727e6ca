"""The package system: .repo files, rpm-md metadata, libsolv solving, RPM reading and unpacking, rpmdb."""
