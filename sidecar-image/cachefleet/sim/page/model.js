// The simulator's model, the same computation as the Python package cachefleet.sim, step for
// step, so the page recomputes as a slider moves. tests/sim/test_page.py runs both on the same
// inputs and requires the same numbers. Constants, measured figures and ring figures come from
// the page's data block (DATA), written by Python: they are never restated here.
"use strict";

const CachefleetModel = (() => {
  // -- popularity.py -------------------------------------------------------------------------
  function rankMass(first, last, s) {
    if (first === last) return Math.pow(first, -s);
    const low = first - 0.5;
    const high = last + 0.5;
    if (Math.abs(s - 1.0) < 1e-9) return Math.log(high / low);
    return (Math.pow(high, 1.0 - s) - Math.pow(low, 1.0 - s)) / (1.0 - s);
  }

  function zipfBuckets(keys, s, constants) {
    const totalKeys = Math.max(1, Math.floor(keys));
    const ranges = [];
    let first = 1;
    while (first <= totalKeys) {
      let last = first <= constants.exact_head ? first : Math.floor(first * constants.growth);
      last = Math.min(Math.max(last, first), totalKeys);
      ranges.push([first, last]);
      first = last + 1;
    }
    const masses = ranges.map(([a, b]) => rankMass(a, b, s));
    let total = 0.0;
    for (const mass of masses) total += mass;
    return ranges.map(([a, b], i) => ({ count: b - a + 1, share: masses[i] / total / (b - a + 1) }));
  }

  // -- ttlcache.py ---------------------------------------------------------------------------
  function steadyMissRate(buckets, rate, ttl) {
    let total = 0.0;
    for (const bucket of buckets) {
      const lam = rate * bucket.share;
      total += (bucket.count * lam) / (1.0 + lam * ttl);
    }
    return total;
  }

  function coldMisses(buckets, rate, ttl, elapsed) {
    let total = 0.0;
    for (const bucket of buckets) {
      const lam = rate * bucket.share;
      const firstReads = 1.0 - Math.exp(-lam * elapsed);
      total += bucket.count * (firstReads + (lam * elapsed - firstReads) / (1.0 + lam * ttl));
    }
    return total;
  }

  function readShare(buckets, rate, elapsed) {
    let total = 0.0;
    for (const bucket of buckets) {
      total += bucket.count * bucket.share * (1.0 - Math.exp(-rate * bucket.share * elapsed));
    }
    return total;
  }

  function staleReadRate(buckets, rate, writeRatio, ttl, outage, since) {
    let total = 0.0;
    for (const bucket of buckets) {
      const lam = rate * bucket.share;
      const written = 1.0 - Math.exp(-writeRatio * lam * outage);
      const alive = Math.exp(-(outage + since) / ttl) * Math.exp(-writeRatio * lam * since);
      total += bucket.count * lam * written * alive;
    }
    return total;
  }

  function staleReads(buckets, rate, writeRatio, ttl, outage) {
    let total = 0.0;
    for (const bucket of buckets) {
      const lam = rate * bucket.share;
      const written = 1.0 - Math.exp(-writeRatio * lam * outage);
      total +=
        (bucket.count * lam * written * Math.exp(-outage / ttl)) / (writeRatio * lam + 1 / ttl);
    }
    return total;
  }

  // -- load.py -------------------------------------------------------------------------------
  function phase(start, share = 0.0, mode = "base", ttl = 0.0, components = []) {
    return { start, share, mode, ttl, components };
  }

  function extraReads(keys, baseline, phases, start, end) {
    let total = 0.0;
    phases.forEach((p, index) => {
      const stop = index + 1 < phases.length ? phases[index + 1].start : end;
      const low = Math.max(start, p.start);
      const high = Math.min(end, stop);
      if (high <= low) return;
      if (p.mode === "database") {
        total += p.share * (keys.rate - baseline) * (high - low);
      } else if (p.mode === "cold") {
        let reads = 0.0;
        for (const [weight, since] of p.components) {
          reads +=
            weight *
            (coldMisses(keys.buckets, keys.rate, p.ttl, high - since) -
              coldMisses(keys.buckets, keys.rate, p.ttl, low - since));
        }
        total += p.share * (reads - baseline * (high - low));
      }
    });
    return total;
  }

  function perSecond(keys, baseline, phases, t, C) {
    return baseline + extraReads(keys, baseline, phases, t - C.average_s, t);
  }

  function peakRate(keys, baseline, phases, C) {
    let peak = baseline;
    for (const p of phases) peak = Math.max(peak, perSecond(keys, baseline, phases, p.start + C.average_s, C));
    return peak;
  }

  function timeGrid(start, end, events, points, C) {
    const grid = [];
    for (let i = 0; i < points; i++) grid.push(start + ((end - start) * i) / (points - 1));
    for (const event of events) {
      for (const t of [event, event + C.average_s]) if (start < t && t < end) grid.push(t);
    }
    grid.sort((a, b) => a - b);
    return grid.filter((t, i) => i === 0 || t !== grid[i - 1]);
  }

  function series(keys, baseline, phases, grid, C) {
    return grid.map((t) => perSecond(keys, baseline, phases, t, C));
  }

  // -- calibration.py ------------------------------------------------------------------------
  const sidecarCpuUs = (F, pipeline) => (pipeline >= 16 ? F.sidecar_cpu_us_p16 : F.sidecar_cpu_us_p1);
  const twemproxyCpuUs = (F, pipeline) =>
    pipeline >= 16 ? F.twemproxy_cpu_us_p16 : F.twemproxy_cpu_us_p1;
  const shardCapacity = (F, pipeline) => (pipeline >= 16 ? F.redis_rps_p16 : F.redis_rps_p1);

  // -- scenarios/connections.py --------------------------------------------------------------
  function connections(p, D) {
    const F = D.figures;
    const perProcess = p.workers_per_pod * p.pool_per_worker;
    const clientPerShard = p.app_pods * perProcess;
    const sidecarPerShard = p.app_pods * p.connections_per_shard;
    const n = D.constants.connections.curve_points;
    const [low, high] = D.constants.connections.pods_range;
    const pods = [];
    for (let i = 0; i < n; i++) pods.push(low * Math.exp((Math.log(high / low) * i) / (n - 1)));
    return {
      client_side_total: clientPerShard * p.shards,
      sidecar_total: sidecarPerShard * p.shards,
      client_side_per_shard: clientPerShard,
      sidecar_per_shard: sidecarPerShard,
      client_side_per_pod: perProcess * p.shards,
      sidecar_per_pod: p.connections_per_shard * p.shards,
      app_to_sidecar_per_pod: perProcess,
      reduction: clientPerShard / sidecarPerShard,
      maxclients: F.redis_maxclients,
      client_side_shard_memory_active: clientPerShard * F.connection_bytes_active,
      client_side_shard_memory_idle: clientPerShard * F.connection_bytes_idle,
      sidecar_shard_memory_active: sidecarPerShard * F.connection_bytes_active,
      sidecar_shard_memory_idle: sidecarPerShard * F.connection_bytes_idle,
      curve_pods: pods,
      curve_client_side_per_shard: pods.map((x) => x * perProcess),
      curve_sidecar_per_shard: pods.map((x) => x * p.connections_per_shard),
    };
  }

  // -- scenarios/latency.py ------------------------------------------------------------------
  function hopUs(F, ratePerPod, pipeline) {
    const service = sidecarCpuUs(F, pipeline);
    const utilisation = (ratePerPod * service) / 1e6;
    if (utilisation >= 1.0) return Infinity;
    return F.sidecar_hop_us + (service * utilisation) / (1.0 - utilisation);
  }

  function latency(p, D) {
    const F = D.figures;
    const C = D.constants.latency;
    const ratePerPod = p.request_rate / p.app_pods;
    const service = sidecarCpuUs(F, p.pipeline);
    const saturation = 1e6 / service;
    const hop = hopUs(F, ratePerPod, p.pipeline);
    const direct = p.network_rtt_us + 1e6 / shardCapacity(F, p.pipeline);
    const clientSide = direct + F.route_cost_us;
    const finite = hop !== Infinity;
    const rates = [];
    for (let i = 0; i < C.curve_points; i++) {
      rates.push((saturation * C.curve_top_utilisation * i) / (C.curve_points - 1));
    }
    return {
      rate_per_pod: ratePerPod,
      sidecar_utilisation: ratePerPod / saturation,
      sidecar_saturation_rate: saturation,
      hop_us: finite ? hop : null,
      direct_us: direct,
      client_side_us: clientSide,
      python_client_us: direct + F.python_client_added_us,
      sidecar_us: finite ? direct + hop : null,
      overhead: finite ? (direct + hop) / clientSide - 1.0 : null,
      sidecar_cores: (p.request_rate * service) / 1e6,
      twemproxy_cores: (p.request_rate * twemproxyCpuUs(F, p.pipeline)) / 1e6,
      smart_client_cores: (p.request_rate * F.route_cost_us) / 1e6,
      python_client_cores: (p.request_rate * F.python_client_added_us) / 1e6,
      curve_rate_per_pod: rates,
      curve_hop_us: rates.map((r) => hopUs(F, r, p.pipeline)),
    };
  }

  // -- scenarios/failure.py ------------------------------------------------------------------
  function failurePhases(p, strategy, failed, moved, C) {
    const detect = p.detection_s;
    const back = p.outage_s;
    const ttl = strategy === "gutter" ? p.gutter_ttl_s : p.key_ttl_s;
    const during =
      strategy === "none"
        ? phase(detect, failed, "database")
        : phase(detect, moved, "cold", ttl, [[1.0, detect]]);
    const comesBackEmpty = strategy === "gutter" || p.returns_with_data === 0;
    const after = comesBackEmpty ? phase(back, failed, "cold", p.key_ttl_s, [[1.0, back]]) : phase(back);
    return [phase(-C.before_s), phase(0.0, failed, "database"), during, after];
  }

  function staleShare(p, strategy, failed, moved) {
    if (strategy === "gutter") return 0.0;
    if (p.returns_with_data === 0) return strategy === "modulo" ? moved - failed : 0.0;
    return strategy !== "none" ? moved : failed;
  }

  function failure(p, buckets, ring, D) {
    const C = D.constants.failure;
    const L = D.constants.load;
    const keys = { buckets, rate: p.request_rate, ttl: p.key_ttl_s };
    const baseline = steadyMissRate(buckets, p.request_rate, p.key_ttl_s);
    const end = p.outage_s + C.after_s;
    const grid = timeGrid(-C.before_s, end, [0.0, p.detection_s, p.outage_s], C.points, L);
    const capacity = shardCapacity(D.figures, p.pipeline);
    const rate = p.request_rate;
    const shards = p.shards;
    const shares = {
      none: [ring.planned_failed_share, 0.0],
      modulo: [1.0 / shards, ring.modulo_moved],
      consistent: [ring.classic_failed_share, ring.classic_moved],
      gutter: [ring.planned_failed_share, ring.planned_failed_share],
    };
    const busiest = {
      none: rate / shards,
      modulo: rate / (shards - 1),
      consistent: rate * ring.classic_busiest_share_after,
      gutter: Math.max(rate / shards, (rate * ring.planned_failed_share) / p.gutter_size),
    };
    const outcomes = {};
    for (const strategy of C.strategies) {
      const [failed, moved] = shares[strategy];
      const phases = failurePhases(p, strategy, failed, moved, C);
      const lostFor = strategy === "none" ? p.outage_s : p.detection_s;
      const stale = staleShare(p, strategy, failed, moved);
      const peak = peakRate(keys, baseline, phases, L);
      outcomes[strategy] = {
        failed_share: failed,
        moved_share: moved,
        failed_reads: rate * failed * lostFor,
        extra_database_reads: extraReads(keys, baseline, phases, phases[0].start, end),
        peak_database_rate: peak,
        peak_ratio: peak / baseline,
        stale_share: stale,
        stale_reads: stale * staleReads(buckets, rate, p.write_ratio, p.key_ttl_s, p.outage_s),
        stale_read_rate_at_return:
          stale * staleReadRate(buckets, rate, p.write_ratio, p.key_ttl_s, p.outage_s, 0.0),
        busiest_server_rate: busiest[strategy],
        busiest_server_utilisation: busiest[strategy] / capacity,
        database_rate: series(keys, baseline, phases, grid, L),
      };
    }
    return {
      baseline_database_rate: baseline,
      steady_hit_ratio: 1.0 - baseline / rate,
      gutter_failure_reduction: 1.0 - outcomes.gutter.failed_reads / outcomes.none.failed_reads,
      time: grid,
      strategies: outcomes,
    };
  }

  // -- scenarios/celebrity.py ----------------------------------------------------------------
  function keyLoadOnShard(p, keyRate, withL1) {
    const perSidecar = keyRate / p.app_pods;
    if (!withL1 || perSidecar < p.hot_threshold) return keyRate + p.celebrity_writes;
    const refetches = Math.min(perSidecar, 1000.0 / p.l1_ttl_ms + p.celebrity_writes);
    return p.app_pods * refetches + p.celebrity_writes;
  }

  function celebrity(p, D) {
    const C = D.constants.celebrity;
    const normal = p.request_rate / p.shards;
    const capacity = shardCapacity(D.figures, p.pipeline);
    const without = normal + keyLoadOnShard(p, p.celebrity_rate, false);
    const withL1 = normal + keyLoadOnShard(p, p.celebrity_rate, true);
    const l1From = p.hot_threshold * p.app_pods;
    const overloadFrom = Math.max(0.0, capacity - normal - p.celebrity_writes);
    const top = Math.max(2.0 * p.celebrity_rate, 1.5 * l1From, 1.5 * overloadFrom, 1000.0);
    const rates = [];
    for (let i = 0; i < C.curve_points; i++) rates.push((top * i) / (C.curve_points - 1));
    const reads = p.celebrity_rate;
    return {
      normal_shard_rate: normal,
      rate_per_sidecar: p.celebrity_rate / p.app_pods,
      hot: p.celebrity_rate / p.app_pods >= p.hot_threshold,
      l1_from_fleet_rate: l1From,
      shard_capacity: capacity,
      hot_shard_rate_without_l1: without,
      hot_shard_rate_with_l1: withL1,
      utilisation_without_l1: without / capacity,
      utilisation_with_l1: withL1 / capacity,
      share_reaching_shard: reads > 0 ? (withL1 - normal - p.celebrity_writes) / reads : 0.0,
      overload_from_rate: overloadFrom,
      threshold_to_protect_shard: overloadFrom / p.app_pods,
      curve_rate: rates,
      curve_without_l1: rates.map((r) => normal + keyLoadOnShard(p, r, false)),
      curve_with_l1: rates.map((r) => normal + keyLoadOnShard(p, r, true)),
    };
  }

  // -- scenarios/capacity.py -----------------------------------------------------------------
  function ramp(stepSeconds, stepsPercent) {
    const starts = [];
    const added = [];
    let previous = 0.0;
    stepsPercent.forEach((percent, index) => {
      starts.push(index * stepSeconds);
      added.push((percent - previous) / 100.0);
      previous = percent;
    });
    return { starts, added };
  }

  function warmHitRatio(steps, buckets, rate, t) {
    let warm = 0.0;
    let shadowed = 0.0;
    steps.starts.forEach((start, i) => {
      if (start <= t) {
        shadowed += steps.added[i];
        warm += steps.added[i] * readShare(buckets, rate, t - start);
      }
    });
    return shadowed > 0 ? warm / shadowed : 0.0;
  }

  function cutoverTime(p, buckets, steps) {
    const rampDone = steps.starts.length * p.step_seconds;
    const timeout = p.warmup_timeout_s;
    if (rampDone >= timeout) return [timeout, true];
    const warmEnough = (t) => warmHitRatio(steps, buckets, p.request_rate, t) >= p.cutover_hit_ratio;
    if (warmEnough(rampDone)) return [rampDone, false];
    if (!warmEnough(timeout)) return [timeout, true];
    let low = rampDone;
    let high = timeout;
    while (high - low > 1) {
      const middle = Math.floor((low + high) / 2);
      if (warmEnough(middle)) high = middle;
      else low = middle;
    }
    return [high, false];
  }

  function capacityChange(p, buckets, ring, D) {
    const C = D.constants.capacity;
    const L = D.constants.load;
    const keys = { buckets, rate: p.request_rate, ttl: p.key_ttl_s };
    const baseline = steadyMissRate(buckets, p.request_rate, p.key_ttl_s);
    const steps = ramp(p.step_seconds, D.constants.warmup_steps_percent);
    const [cutover, byTimeout] = cutoverTime(p, buckets, steps);
    const graceEnd = cutover + p.grace_s;
    const end = graceEnd + C.after_s;
    const grid = timeGrid(-C.before_s, end, [0.0, cutover, graceEnd], C.points, L);
    const warmSince = steps.starts.map((start, i) => [steps.added[i], Math.min(start, cutover)]);
    let warmShare = 0.0;
    for (const [added, since] of warmSince) {
      warmShare += added * readShare(buckets, p.request_rate, cutover - since);
    }
    const moved = {
      modulo: ring.modulo_moved,
      consistent: ring.classic_moved,
      planned: ring.planned_moved,
      warmup: ring.planned_moved,
    };
    const outcomes = {};
    for (const strategy of C.strategies) {
      const share = moved[strategy];
      let phases;
      let atCutover;
      let missShare;
      if (strategy === "warmup") {
        phases = [phase(-C.before_s), phase(graceEnd, share, "cold", p.key_ttl_s, warmSince)];
        atCutover = cutover;
        missShare = 1.0 - warmShare;
      } else {
        phases = [phase(-C.before_s), phase(0.0, share, "cold", p.key_ttl_s, [[1.0, 0.0]])];
        atCutover = 0.0;
        missShare = 1.0;
      }
      const peak = peakRate(keys, baseline, phases, L);
      outcomes[strategy] = {
        moved_share: share,
        cutover_s: atCutover,
        new_owner_miss_share: missShare,
        peak_database_rate: peak,
        peak_ratio: peak / baseline,
        extra_database_reads: extraReads(keys, baseline, phases, phases[0].start, end),
        database_rate: series(keys, baseline, phases, grid, L),
      };
    }
    return {
      baseline_database_rate: baseline,
      ideal_moved_share: ring.ideal_moved,
      ramp_done_s: steps.starts.length * p.step_seconds,
      cutover_by_timeout: byTimeout,
      warm_hit_ratio_at_cutover: warmShare,
      time: grid,
      strategies: outcomes,
    };
  }

  // -- model.py ------------------------------------------------------------------------------
  function simulate(p, D) {
    const failureRing = D.rings.failure[String(p.shards)];
    const resizeRing = D.rings.resize[`${p.resize_from}>${p.resize_to}`];
    if (!failureRing || !resizeRing) {
      throw new Error(`no ring figures for ${p.shards} shards or ${p.resize_from} → ${p.resize_to}`);
    }
    const buckets = zipfBuckets(p.keys, p.zipf_s, D.constants.popularity);
    return {
      connections: connections(p, D),
      latency: latency(p, D),
      failure: failure(p, buckets, failureRing, D),
      celebrity: celebrity(p, D),
      capacity: capacityChange(p, buckets, resizeRing, D),
    };
  }

  return { simulate, zipfBuckets };
})();
