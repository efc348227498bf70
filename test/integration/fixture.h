// Integration test fixture: real network namespaces, real processes, run as root.
//
// Everything a test creates carries a unique name ("nspit-<pid>-<n>") and is removed in
// a destructor, also when the test fails. ctest runs tests in parallel: no fixed names,
// no fixed host ports (upstreams listen on port 0 and report the port they got).
//
// This header only gathers the pieces; each says what it provides:
//   wait.h         Millis, wait_until
//   scratch.h      unique names, TempDir
//   processes.h    Process, run, run_shell, rss_kib
//   namespaces.h   Netns: a scratch network namespace, commands inside it
//   programs.h     paths of the built programs, EchoServer (nsproxy-echo), Nginx
//   daemon.h       Daemon: nsproxyd under test, its log, calls to it
//   control.h      register_tenant (the one way to register a tenant), status_request,
//                  connect_control
//   sockets.h      sockets inside a namespace, bounded send/recv, RawUpstream
//   http_client.h  HttpConn, HttpResponse, http_request, nsproxy-echo's headers
//   cni.h          running the CNI plugin, plugin configs
//   bases.h        IntegrationTest, HttpTest and the suite fixtures shared by files
//   one_tenant.h   OneTenantTest: daemon + echo upstream + one registered namespace
#pragma once

#include "bases.h"
#include "cni.h"
#include "control.h"
#include "daemon.h"
#include "http_client.h"
#include "namespaces.h"
#include "one_tenant.h"
#include "processes.h"
#include "programs.h"
#include "scratch.h"
#include "sockets.h"
#include "wait.h"
