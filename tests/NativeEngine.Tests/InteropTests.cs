using NativeEngine.Interop;

namespace NativeEngine.Tests;

public class InteropTests
{
    private static ToyModelSpec Spec(int n = 5, int m = 2, int instances = 2) =>
        new(ToyModelKind.ReluOutput, n, m, instances, 64, 1e-3f, 0.01f, OptimizerKind.AdamW, 7);

    private static float[] Fill(int count, float value) => Enumerable.Repeat(value, count).ToArray();

    [Test]
    public void StructSizesMatchTheNativeOnes()
    {
        foreach (var (name, managed, native) in Engine.StructSizes)
            Assert.That(managed, Is.EqualTo(native), $"{name}: C# mirror is {managed} bytes, C is {native}");
    }

    [Test]
    public void BadArgumentRaisesNativeEngineExceptionWithTheNativeMessage()
    {
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() =>
            new ToyModel(context, Spec(m: 0), Fill(10, 1f), Fill(10, 0.5f)).Dispose())!;
        Assert.That(error.Status, Is.EqualTo(Status.InvalidArgument));
        Assert.That(error.NativeMessage, Does.Contain("n_hidden is 0"));
        Assert.That(error.Message, Does.Contain("NE_ERR_INVALID_ARGUMENT"));
    }

    [Test]
    public void WrongBufferLengthIsNamed()
    {
        using var context = new EngineContext(Backend.Cpu);
        var error = Assert.Throws<NativeEngineException>(() =>
            new ToyModel(context, Spec(), Fill(9, 1f), Fill(10, 0.5f)).Dispose())!;
        Assert.That(error.NativeMessage, Does.Contain("importance has 9 values"));
        using var model = new ToyModel(context, Spec(), Fill(10, 1f), Fill(10, 0.5f));
        error = Assert.Throws<NativeEngineException>(() => model.GetParameters(new float[19], default, new float[10]))!;
        Assert.That(error.NativeMessage, Does.Contain("W has room for 19"));
    }

    [Test]
    public void UseAfterDisposeThrowsObjectDisposed()
    {
        using var context = new EngineContext(Backend.Cpu);
        var model = new ToyModel(context, Spec(), Fill(10, 1f), Fill(10, 0.5f));
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.Train(1));
        model.Dispose();  // twice is harmless
    }

    [Test]
    public void CudaRequestedWithoutDeviceIsAClearError()
    {
        if (Engine.Runtime.CudaUsable) Assert.Ignore("a CUDA device is present: the unavailable path cannot be exercised");
        var error = Assert.Throws<NativeEngineException>(() => new EngineContext(Backend.Cuda).Dispose())!;
        Assert.That(error.Status, Is.EqualTo(Status.BackendUnavailable));
        Assert.That(error.NativeMessage, Does.Contain("backend cuda requested but unavailable"));
    }

    [Test]
    public void ResolverTriesTheOverridePathFirst()
    {
        var previous = Environment.GetEnvironmentVariable("NE_NATIVE_PATH");
        try
        {
            Environment.SetEnvironmentVariable("NE_NATIVE_PATH", "/opt/custom");
            var paths = NativeLibraryResolver.CandidatePaths().ToList();
            Assert.That(paths[0], Is.EqualTo("/opt/custom"));
            Assert.That(paths, Has.Some.EndsWith("libnativeengine.so").And.Some.StartsWith(AppContext.BaseDirectory.TrimEnd('/')));
        }
        finally
        {
            Environment.SetEnvironmentVariable("NE_NATIVE_PATH", previous);
        }
    }

    [Test]
    public void ResolverFailureListsEveryPathTried()
    {
        var dir = TestSupport.TempDirectory("resolver");
        var missing = Path.Combine(dir, "absent", "libnativeengine.so");
        var broken = Path.Combine(dir, "libnativeengine.so");
        File.WriteAllText(broken, "not a shared library");
        var error = Assert.Throws<DllNotFoundException>(() => NativeLibraryResolver.LoadFirst([missing, broken]))!;
        Assert.That(error.Message, Does.Contain($"{missing} (not found)"));
        Assert.That(error.Message, Does.Contain($"{broken} (exists but failed to load"));
        Assert.That(error.Message, Does.Contain("NE_NATIVE_PATH"));
    }

    [Test]
    public void ResolverRefusesALibraryOfAnotherAbi()
    {
        // Any loadable library without ne_abi_version stands for a libnativeengine built from other sources.
        var other = new[] { "/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6" }.First(File.Exists);
        var error = Assert.Throws<DllNotFoundException>(() => NativeLibraryResolver.LoadFirst([other]))!;
        Assert.That(error.Message, Does.Contain($"{other} (C ABI version unknown").And.Contain($"need {Engine.AbiVersion}"));
        Assert.That(Engine.LibraryAbiVersion, Is.EqualTo(Engine.AbiVersion), "the library these tests load is current");
    }

    [Test]
    public void NvtxRangesAreCompiledInWhereTheToolkitHasItsHeaders()
    {
        var headers = new[] { "/usr/include/nvtx3/nvToolsExt.h", "/usr/local/cuda/include/nvtx3/nvToolsExt.h" }
            .Where(File.Exists).ToArray();
        if (headers.Length == 0) Assert.Ignore("ignored: no CUDA toolkit's nvtx3 headers on this machine");
        Assert.That(Engine.Runtime.Nvtx, Is.True, $"{headers[0]} exists, yet the library was built without NVTX ranges");
    }

    [Test]
    public void CapabilitiesSayWhatTheCpuBackendRuns()
    {
        using var context = new EngineContext(Backend.Cpu);
        var c = context.Capabilities;
        Assert.That(c.Backend, Is.EqualTo(Backend.Cpu));
        Assert.That(c.SaePrecisions, Is.EqualTo(new[] { SaePrecision.Fp32 }));
        Assert.That(c.SaeArchitectures, Is.EquivalentTo(Enum.GetValues<SaeArchitecture>()));
        Assert.That(c.ToyModels, Is.EquivalentTo(Enum.GetValues<ToyModelKind>()));
        Assert.That(c.MoeNoise, Is.EquivalentTo(Enum.GetValues<RouterNoise>()));
        Assert.That((c.Sgemm, c.MaxSharedBytes, c.MaxSaeSlots), Is.EqualTo((true, 0L, long.MaxValue)));
    }

    [Test]
    public void WhyUnsupportedAnswersWithoutCreatingAModel()
    {
        using var context = new EngineContext(Backend.Cpu);
        var sae = new SaeModelSpec(SaeArchitecture.TopK, 8, 16, 2, 4, Seed: 0);
        Assert.That(context.WhyUnsupported(sae), Is.Null);
        Assert.That(context.WhyUnsupported(sae with { Precision = SaePrecision.Tf32 }),
            Does.Contain("config.precision is 1 (tf32)").And.Contain("needs the CUDA backend"));
        Assert.That(context.WhyUnsupported(sae with { K = 17 }), Does.Contain("config.k is 17"));
        Assert.That(context.WhyUnsupported(Spec()), Is.Null);
        Assert.That(context.WhyUnsupported(Spec(m: 0)), Does.Contain("n_hidden is 0"));
    }

    [Test]
    public void TrainingIsDeterministicForASeedAndChangesWithIt()
    {
        using var context = new EngineContext(Backend.Cpu);
        float[] TrainedW(ulong seed)
        {
            using var model = new ToyModel(context, Spec() with { Seed = seed }, Fill(10, 1f), Fill(10, 0.5f));
            model.Train(20);
            Assert.That(model.StepsDone, Is.EqualTo(20));
            return model.GetParameters().W;
        }
        Assert.That(TrainedW(3), Is.EqualTo(TrainedW(3)));
        Assert.That(TrainedW(3), Is.Not.EqualTo(TrainedW(4)));
    }

    [Test]
    public void SampledBatchHasTheRequestedDensity()
    {
        using var context = new EngineContext(Backend.Cpu);
        var spec = Spec(n: 50, instances: 2) with { BatchSize = 2000 };
        var probability = Fill(50, 0.2f).Concat(Fill(50, 0.02f)).ToArray();
        using var model = new ToyModel(context, spec, Fill(100, 1f), probability);
        foreach (var (instance, p) in new[] { (0, 0.2), (1, 0.02) })
        {
            var x = model.SampleBatch(3, instance);
            var density = x.Count(v => v != 0) / (double)x.Length;
            var sd = Math.Sqrt(p * (1 - p) / x.Length);
            Assert.That(density, Is.EqualTo(p).Within(5 * sd), $"instance {instance}");
            Assert.That(x.All(v => v is >= 0 and < 1), Is.True);
        }
    }

    [Test]
    public void CudaTrainingMatchesCpu()
    {
        TestSupport.RequireCuda();
        // eps = 1e-3 keeps Adam's update smooth in the gradient (see cuda/tests/test_parity.cpp).
        var spec = Spec(n: 20, m: 5, instances: 4) with { BatchSize = 512, Eps = 1e-3f };
        var importance = Fill(80, 1f);
        var probability = Fill(80, 0.1f);
        (float[] W, float[] Loss) Run(Backend backend)
        {
            using var context = new EngineContext(backend);
            using var model = new ToyModel(context, spec, importance, probability);
            model.Train(100);
            return (model.GetParameters().W, model.Evaluate(4).Loss);
        }
        var cpu = Run(Backend.Cpu);
        var cuda = Run(Backend.Cuda);
        for (var j = 0; j < cpu.W.Length; j++)
            Assert.That(cuda.W[j], Is.EqualTo(cpu.W[j]).Within(2e-3 + 1e-2 * Math.Abs(cpu.W[j])), $"W[{j}]");
        for (var k = 0; k < cpu.Loss.Length; k++)
            Assert.That(cuda.Loss[k], Is.EqualTo(cpu.Loss[k]).Within(1e-5 + 1e-2 * cpu.Loss[k]), $"loss[{k}]");
    }
}
