#include <cmath>

#include "async.h"
#include "bindings.h"
#include "collective_claim.h"
#include "convert.h"
#include "js_errors.h"
#include "pace_core.h"

namespace pace::addon {

namespace {

Napi::Value groupToJs(Napi::Env env, const std::shared_ptr<distributed::Group>& group) {
  if (!group) return env.Null();
  Napi::Object object = Napi::Object::New(env);
  object.Set("rank", group->rank());
  object.Set("worldSize", group->worldSize());
  object.Set("backend", group->backend());
  object.Set("timeoutSeconds", static_cast<double>(group->timeout().count()) / 1000.0);
  return object;
}

// initDistributed({ backend, rank, worldSize, localRank, masterAddr, masterPort, rendezvousFile?, agentStorePrefix?,
//   timeoutSeconds })
//   -> Promise<{ rank, worldSize, backend, timeoutSeconds }>, once every rank has joined.
Napi::Value initDistributed(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsObject()) throw jsError(env, ErrorCode::InvalidOption, "initDistributed needs an options object");
    const auto object = info[0].As<Napi::Object>();
    distributed::GroupOptions options;
    options.backend = stringFromJs(object.Get("backend"), "backend");
    options.rank = static_cast<int>(numberOr(object, "rank", options.rank));
    options.worldSize = static_cast<int>(numberOr(object, "worldSize", options.worldSize));
    options.localRank = static_cast<int>(numberOr(object, "localRank", options.localRank));
    options.masterAddr = stringFromJs(object.Get("masterAddr"), "masterAddr");
    options.masterPort = static_cast<int>(numberOr(object, "masterPort", options.masterPort));
    if (const Napi::Value file = object.Get("rendezvousFile"); !file.IsUndefined())
      options.rendezvousFile = stringFromJs(file, "rendezvousFile");
    if (const Napi::Value prefix = object.Get("agentStorePrefix"); !prefix.IsUndefined())
      options.agentStorePrefix = stringFromJs(prefix, "agentStorePrefix");
    options.timeout = std::chrono::milliseconds(
        static_cast<int64_t>(1000.0 * numberOr(object, "timeoutSeconds", options.timeout.count() / 1000.0)));
    options.validate();
    return runAsync(
        env, "pace.initDistributed", [options] { return distributed::initialize(options); },
        [](Napi::Env env, std::shared_ptr<distributed::Group>& group) { return groupToJs(env, group); }, Runs::Waiting);
  });
}

// destroyDistributed(): leaves the group (trainers made in it keep their connections until released).
Napi::Value destroyDistributed(const Napi::CallbackInfo& info) {
  distributed::shutdown();
  return info.Env().Undefined();
}

// distributedGroup() -> { rank, worldSize, backend, timeoutSeconds } | null
Napi::Value distributedGroup(const Napi::CallbackInfo& info) { return groupToJs(info.Env(), distributed::current()); }

// distributedBarrier(what) -> Promise<void>: returns once every rank has called it.
Napi::Value distributedBarrier(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const std::string what = stringFromJs(info[0], "what");
    auto group = distributed::current();
    if (!group) throw jsError(env, ErrorCode::InvalidState, "no distributed group: call initDistributed() first");
    return runAsync(
        env, "pace.distributedBarrier",
        [group, what, claim = claimCollectives(env, "the barrier '" + what + "'")] {
          group->barrier(what);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); }, Runs::Waiting);
  });
}

// distributedAgree([[name, value], ...], what) -> Promise<void>: rejects on every rank, naming the first setting
// that differs, unless every rank gave the same settings (train/data_parallel.h).
Napi::Value distributedAgree(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw jsError(env, ErrorCode::InvalidOption, "settings must be an array of [name, value]");
    const auto pairs = info[0].As<Napi::Array>();
    std::vector<train::DataParallel::Setting> settings;
    for (uint32_t i = 0; i < pairs.Length(); ++i) {
      const Napi::Value pair = pairs.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2)
        throw jsError(env, ErrorCode::InvalidOption, "settings[" + std::to_string(i) + "] must be [name, value]");
      settings.push_back({stringFromJs(pair.As<Napi::Array>().Get(0u), "a setting's name"),
                          stringFromJs(pair.As<Napi::Array>().Get(1u), "a setting's value")});
    }
    const std::string what = stringFromJs(info[1], "what");
    auto group = distributed::current();
    if (!group) throw jsError(env, ErrorCode::InvalidState, "no distributed group: call initDistributed() first");
    return runAsync(
        env, "pace.distributedAgree",
        [group, settings, what, claim = claimCollectives(env, "comparing " + what + " across the ranks")] {
          train::DataParallel(group).agree(settings, what);
          return true;
        },
        [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); }, Runs::Waiting);
  });
}

// distributedGather(value: integer, what) -> Promise<number[]>: every rank's value, in rank order. Collective: every
// rank calls it at the same point of its work, or the group's timeout names `what`.
Napi::Value distributedGather(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    const double given = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
    if (!info[0].IsNumber() || given != std::trunc(given) || std::fabs(given) > 9007199254740991.0)
      throw jsError(env, ErrorCode::InvalidOption, "value must be a safe integer");
    const auto value = static_cast<int64_t>(given);
    const std::string what = stringFromJs(info[1], "what");
    auto group = distributed::current();
    if (!group) throw jsError(env, ErrorCode::InvalidState, "no distributed group: call initDistributed() first");
    return runAsync(
        env, "pace.distributedGather",
        [group, value, what, claim = claimCollectives(env, "gathering " + what + " from the ranks")] {
          return distributed::gatherValues(*group, value, what);
        },
        [](Napi::Env env, std::vector<int64_t>& values) -> Napi::Value {
          Napi::Array array = Napi::Array::New(env, values.size());
          for (uint32_t i = 0; i < values.size(); ++i) array.Set(i, static_cast<double>(values[i]));
          return array;
        },
        Runs::Waiting);
  });
}

Napi::Value distributedBackends(const Napi::CallbackInfo& info) {
  const auto names = distributed::availableBackends();
  Napi::Array array = Napi::Array::New(info.Env(), names.size());
  for (uint32_t i = 0; i < names.size(); ++i) array.Set(i, names[i]);
  return array;
}

}  // namespace

void registerDistributedBindings(Napi::Env env, Napi::Object exports) {
  exports.Set("initDistributed", Napi::Function::New(env, initDistributed, "initDistributed"));
  exports.Set("destroyDistributed", Napi::Function::New(env, destroyDistributed, "destroyDistributed"));
  exports.Set("distributedGroup", Napi::Function::New(env, distributedGroup, "distributedGroup"));
  exports.Set("distributedBarrier", Napi::Function::New(env, distributedBarrier, "distributedBarrier"));
  exports.Set("distributedAgree", Napi::Function::New(env, distributedAgree, "distributedAgree"));
  exports.Set("distributedGather", Napi::Function::New(env, distributedGather, "distributedGather"));
  exports.Set("distributedBackends", Napi::Function::New(env, distributedBackends, "distributedBackends"));
}

}  // namespace pace::addon
