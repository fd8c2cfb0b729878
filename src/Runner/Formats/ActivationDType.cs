namespace NativeEngine.Runner.Formats;

/// <summary>How one activation value is stored on disk. Every type is little-endian and read as float32.</summary>
public enum ActivationDType
{
    F32,
    F16,
    /// <summary>bfloat16: the upper 16 bits of a float32, widened on read by a 16-bit left shift.</summary>
    BF16,
}

public static class ActivationDTypes
{
    /// <summary>Bytes per value.</summary>
    public static int Size(this ActivationDType dtype) => dtype == ActivationDType.F32 ? 4 : 2;
}
