// `nsproxyctl cni install|uninstall ...`: the installer's command line (cni_install.h does
// the work). argv[0] is "cni".
#pragma once

namespace nsproxy {

int run_cni_command(int argc, char** argv);

}  // namespace nsproxy
